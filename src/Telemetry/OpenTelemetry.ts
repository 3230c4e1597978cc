/**
 * The engine's spans and metrics through OpenTelemetry, secrets removed from spans on the way. An entry point of
 * its own: importing `plot-engine` loads no OpenTelemetry SDK; a host that exports installs `@effect/opentelemetry`
 * and the `@opentelemetry/*` packages it needs (for OTLP over HTTP: `sdk-trace-base`, `sdk-trace-node`,
 * `resources`, `sdk-metrics`, `exporter-trace-otlp-http`, `exporter-metrics-otlp-http`).
 *
 * The metrics are Effect's own (`Telemetry`'s `plot_engine_*`, every tag set): `@effect/opentelemetry`'s producer
 * reads Effect's metric registry whenever a metric reader collects, so recording them costs nothing more.
 *
 * @example
 * ```ts
 * import * as OpenTelemetry from "plot-engine/Telemetry/OpenTelemetry"
 * import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base"
 * import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
 *
 * // Provide it beside the engine's layer: every generation's spans go to the collector, keys removed.
 * const Tracing = OpenTelemetry.layer(new BatchSpanProcessor(new OTLPTraceExporter({ url: "http://localhost:4318/v1/traces" })))
 * ```
 *
 * @since 0.1.0
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type * as Resource from "@effect/opentelemetry/Resource"
import type { Attributes, AttributeValue, Context as OtelContext } from "@opentelemetry/api"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-http"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import { type MetricReader, PeriodicExportingMetricReader } from "@opentelemetry/sdk-metrics"
import { BatchSpanProcessor, type ReadableSpan, type Span, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Wire from "../internal/wire.js"

const redactValue = (value: AttributeValue | undefined): AttributeValue | undefined =>
  typeof value === "string"
    ? Wire.redactSecrets(value)
    : Array.isArray(value)
    ? value.map((v) => (typeof v === "string" ? Wire.redactSecrets(v) : v)) as AttributeValue
    : value

const redactAttributes = (attributes: Attributes): Attributes =>
  Object.fromEntries(Object.entries(attributes).map(([key, value]) => [key, redactValue(value)]))

/**
 * A span processor that removes secrets from what it passes on. A failed span's exception event holds the
 * printed cause, and a cause printed outside Effect's redaction context shows request headers in full: the
 * `authorization` or `x-api-key` of a provider call would otherwise be exported.
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export class RedactingSpanProcessor implements SpanProcessor {
  constructor(private readonly inner: SpanProcessor) {}
  onStart(span: Span, parentContext: OtelContext): void {
    this.inner.onStart(span, parentContext)
  }
  onEnd(span: ReadableSpan): void {
    this.inner.onEnd(
      new Proxy(span, {
        get: (target, property) => {
          if (property === "attributes") return redactAttributes(target.attributes)
          if (property === "events") {
            return target.events.map((event) =>
              event.attributes === undefined ? event : { ...event, attributes: redactAttributes(event.attributes) }
            )
          }
          if (property === "status") {
            return target.status.message === undefined
              ? target.status
              : { ...target.status, message: Wire.redactSecrets(target.status.message) }
          }
          const value = Reflect.get(target, property, target)
          return typeof value === "function" ? value.bind(target) : value
        }
      })
    )
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush()
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown()
  }
}

/**
 * What the OpenTelemetry layers export besides spans.
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export interface Options {
  /** Readers of the engine's metrics (a periodic OTLP export, a Prometheus exporter, an in-memory one in tests). */
  readonly metricReader?: MetricReader | ReadonlyArray<MetricReader> | undefined
}

/**
 * The resource every export names: this service.
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export const resource = { serviceName: "plot-engine", serviceVersion: "0.1.0" } as const

/**
 * Exports the engine's spans through OpenTelemetry with a span processor of your choice (an OTLP exporter, or an
 * in-memory one in tests), secrets removed on the way (`RedactingSpanProcessor`), and its metrics to the metric
 * readers given.
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export const layer = (spanProcessor: SpanProcessor, options: Options = {}): Layer.Layer<Resource.Resource> =>
  NodeSdk.layer(() => ({
    resource,
    spanProcessor: new RedactingSpanProcessor(spanProcessor),
    metricReader: options.metricReader
  }))

/**
 * How the OTLP export runs.
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export interface OtlpOptions {
  /** How often the metrics are sent (default 60 seconds, OpenTelemetry's `OTEL_METRIC_EXPORT_INTERVAL`'s). */
  readonly metricsInterval?: Duration.DurationInput | undefined
}

/**
 * Spans to an OTLP/HTTP collector at `endpoint` (`{endpoint}/v1/traces`), in batches, and the metrics beside them
 * (`{endpoint}/v1/metrics`, cumulative, every `metricsInterval` and once more when the layer closes).
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export const layerOtlp = (endpoint: string, options: OtlpOptions = {}): Layer.Layer<never> =>
  Layer.unwrapEffect(Effect.map(Effect.runtime<never>(), (runtime) => {
    const base = endpoint.replace(/\/$/, "")
    const intervalMs = Duration.toMillis(options.metricsInterval ?? "60 seconds")
    const warn = (line: string) => Runtime.runFork(runtime)(Effect.logWarning(line))
    return Layer.discard(
      layer(
        new BatchSpanProcessor(reportingFailures("spans", new OTLPTraceExporter({ url: `${base}/v1/traces` }), warn)),
        {
          metricReader: new PeriodicExportingMetricReader({
            exporter: reportingFailures("metrics", new OTLPMetricExporter({ url: `${base}/v1/metrics` }), warn),
            exportIntervalMillis: intervalMs,
            // The reader refuses a timeout longer than the interval; 30 s is OpenTelemetry's default.
            exportTimeoutMillis: Math.min(30_000, intervalMs)
          })
        }
      )
    )
  }))

/** An exporter's result: OpenTelemetry's `ExportResult` (`code` 0 is success). */
interface ExportResult {
  readonly code: number
  readonly error?: Error | undefined
}

/**
 * `exporter`, saying through `warn` when its exports start failing (an endpoint down or unreachable) and when they
 * go through again, once each way: OpenTelemetry's exporters fail silently unless a diagnostic logger is installed.
 */
const reportingFailures = <E extends { export: (items: any, done: (result: ExportResult) => void) => void }>(
  what: "spans" | "metrics",
  exporter: E,
  warn: (line: string) => void
): E => {
  const send = exporter.export.bind(exporter)
  let failing = false
  exporter.export = (items, done) =>
    send(items, (result) => {
      if (result.code !== 0 && !failing) {
        failing = true
        warn(
          `OpenTelemetry: ${what} could not be exported (${
            Wire.redactSecrets(result.error?.message ?? "no reason given")
          }); the next failures are not logged`
        )
      } else if (result.code === 0 && failing) {
        failing = false
        warn(`OpenTelemetry: ${what} are exported again`)
      }
      done(result)
    })
  return exporter
}
