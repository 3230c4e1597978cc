/**
 * The engine's metrics, with stable names (seed §7): generations by outcome, their duration, tokens in and
 * out, retries, calls to providers, errors by type, template fallbacks and cost, tagged by provider and
 * model. They are Effect `Metric`s: read them with `Metric.value`, export them with `@effect/opentelemetry`.
 *
 * @since 0.1.0
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import type * as Resource from "@effect/opentelemetry/Resource"
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http"
import type { Attributes, AttributeValue, Context as OtelContext } from "@opentelemetry/api"
import { BatchSpanProcessor, type ReadableSpan, type Span, type SpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as Option from "effect/Option"
import type { PlotResult } from "./Domain.js"
import * as Errors from "./Errors.js"
import * as Metrics from "./internal/metrics.js"
import * as Wire from "./internal/wire.js"

const tagged = Metrics.tagged

/**
 * Generations, tagged `outcome` (`success`, `template`, `failure`), `provider` and `model`.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const generations = Metrics.fromKey(MetricKey.counter("plot_engine_generations_total", {
  description: "Plot generations, by outcome",
  incremental: true
}))

/**
 * How long generations took, in milliseconds.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const generationDuration = Metrics.fromKey(MetricKey.histogram(
  "plot_engine_generation_duration_ms",
  MetricBoundaries.exponential({ start: 100, factor: 2, count: 12 }),
  "Generation duration in milliseconds"
))

/**
 * @since 0.1.0
 * @category Metrics
 */
export const inputTokens = Metrics.fromKey(MetricKey.counter("plot_engine_input_tokens_total", {
  description: "Prompt tokens the providers reported",
  incremental: true
}))

/**
 * @since 0.1.0
 * @category Metrics
 */
export const outputTokens = Metrics.fromKey(MetricKey.counter("plot_engine_output_tokens_total", {
  description: "Output tokens the providers reported",
  incremental: true
}))

/**
 * Retries across fallback chains.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const retries = Metrics.fromKey(MetricKey.counter("plot_engine_retries_total", { description: "Retried attempts", incremental: true }))

/**
 * Calls sent to a provider, tagged `provider`, `model` and `outcome` (`success`, an error type, or
 * `interrupted`). Attempts the engine decided against (an open circuit, a local queue timeout) are not calls.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const providerCalls = Metrics.fromKey(MetricKey.counter("plot_engine_provider_calls_total", {
  description: "Calls sent to a provider, by outcome",
  incremental: true
}))

/**
 * Failures, tagged `error_type` (the seed's enum), whether retried or final.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const errors = Metrics.fromKey(MetricKey.counter("plot_engine_errors_total", { description: "Failures by type", incremental: true }))

/**
 * @since 0.1.0
 * @category Metrics
 */
export const templateFallbacks = Metrics.fromKey(MetricKey.counter("plot_engine_template_fallbacks_total", {
  description: "Results built by the template generator",
  incremental: true
}))

/**
 * The estimated cost of generations, in USD (unknown prices add nothing).
 *
 * @since 0.1.0
 * @category Metrics
 */
export const costUsd = Metrics.fromKey(MetricKey.counter("plot_engine_cost_usd_total", { description: "Estimated cost in USD", incremental: true }))

/**
 * Records a finished generation.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordResult = (result: PlotResult): Effect.Effect<void> => {
  const tags = { provider: result.provider, model: result.model }
  return Metrics.record((labels) => {
    tagged(generations, { ...tags, outcome: result.isTemplate ? "template" : "success" }).unsafeUpdate(1, labels)
    tagged(generationDuration, tags).unsafeUpdate(result.durationMs, labels)
    tagged(inputTokens, tags).unsafeUpdate(result.usage.inputTokens, labels)
    tagged(outputTokens, tags).unsafeUpdate(result.usage.outputTokens, labels)
    tagged(retries, tags).unsafeUpdate(result.retryCount, labels)
    if (result.isTemplate) templateFallbacks.unsafeUpdate(1, labels)
    if (result.estimatedCostUsd !== null) tagged(costUsd, tags).unsafeUpdate(result.estimatedCostUsd, labels)
  })
}

/**
 * Records a failure: every failed attempt, and the final failure of a generation.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordError = (error: Errors.GenerationError): Effect.Effect<void> =>
  Metric.increment(tagged(errors, {
    error_type: Errors.errorType(error),
    provider: "provider" in error ? error.provider : "none",
    model: "model" in error ? error.model : "none"
  }))

/**
 * Records one call sent to a provider, by how it ended.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordProviderCall = (
  target: { readonly provider: string; readonly model: string },
  outcome: Exit.Exit<unknown, Errors.GenerationError>
): Effect.Effect<void> =>
  Metric.increment(tagged(providerCalls, {
    provider: target.provider,
    model: target.model,
    outcome: Exit.match(outcome, {
      onSuccess: () => "success",
      onFailure: (cause) =>
        Option.match(Cause.failureOption(cause), { onNone: () => "interrupted", onSome: Errors.errorType })
    })
  }))

/**
 * Records a generation that ended in a typed failure.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordFailure = (error: Errors.GenerationError): Effect.Effect<void> =>
  Metric.increment(tagged(generations, {
    provider: "provider" in error ? error.provider : "none",
    model: "model" in error ? error.model : "none",
    outcome: "failure"
  }))

// =============================================================================
// OpenTelemetry
// =============================================================================

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
            return target.events.map((event) => event.attributes === undefined ? event : { ...event, attributes: redactAttributes(event.attributes) })
          }
          if (property === "status") {
            return target.status.message === undefined ? target.status : { ...target.status, message: Wire.redactSecrets(target.status.message) }
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
 * Exports the engine's spans through OpenTelemetry with a span processor of your choice (an OTLP exporter, or an
 * in-memory one in tests), secrets removed on the way (`RedactingSpanProcessor`).
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export const layerOpenTelemetry = (spanProcessor: SpanProcessor): Layer.Layer<Resource.Resource> =>
  NodeSdk.layer(() => ({
    resource: { serviceName: "plot-engine", serviceVersion: "0.1.0" },
    spanProcessor: new RedactingSpanProcessor(spanProcessor)
  }))

/**
 * OpenTelemetry export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (spans to `{endpoint}/v1/traces` over OTLP/HTTP),
 * nothing otherwise.
 *
 * @since 0.1.0
 * @category OpenTelemetry
 */
export const layerOtlpConfig: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.map(Config.option(Config.nonEmptyString("OTEL_EXPORTER_OTLP_ENDPOINT")), (endpoint) =>
    Option.match(endpoint, {
      onNone: () => Layer.empty,
      onSome: (url) =>
        Layer.discard(
          layerOpenTelemetry(new BatchSpanProcessor(new OTLPTraceExporter({ url: `${url.replace(/\/$/, "")}/v1/traces` })))
        )
    }))
)
