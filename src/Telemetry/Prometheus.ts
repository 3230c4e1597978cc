/**
 * The engine's metrics in Prometheus' text format, for a host's `GET /metrics`: Effect's metrics (`Telemetry`'s
 * `plot_engine_*`, every tag set) read by `@effect/opentelemetry`'s producer and written by the official
 * OpenTelemetry Prometheus exporter's serializer, with its naming (a counter's name ends in `_total`, once: the
 * engine's counters are named so already; histograms as `_bucket`, `_sum` and `_count`). The exporter's own server
 * is not started: the host serves the text on its own port (`response`).
 *
 * An entry point of its own (`plot-engine/Telemetry/Prometheus`): it needs `@effect/opentelemetry`,
 * `@opentelemetry/api`, `@opentelemetry/resources`, `@opentelemetry/sdk-metrics` and
 * `@opentelemetry/exporter-prometheus`.
 *
 * @example
 * ```ts
 * import * as Prometheus from "plot-engine/Telemetry/Prometheus"
 * import * as HttpRouter from "@effect/platform/HttpRouter"
 *
 * const router = HttpRouter.empty.pipe(HttpRouter.get("/metrics", Prometheus.response))
 * // provide Prometheus.layer
 * ```
 *
 * @since 0.1.0
 */
import * as Metrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"

/**
 * The content type of Prometheus' text exposition format.
 *
 * @since 0.1.0
 * @category Prometheus
 */
export const contentType = "text/plain; version=0.0.4; charset=utf-8"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Every metric now, in Prometheus' text format. */
  readonly scrape: Effect.Effect<string>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class Prometheus extends Context.Tag("plot-engine/Telemetry/Prometheus")<Prometheus, Service>() {}

/**
 * Reads Effect's metrics through a Prometheus exporter whose server is not started; the reader is shut down
 * with the scope.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make: Effect.Effect<Service, never, Scope.Scope> = Effect.gen(function*() {
  const exporter = new PrometheusExporter({ preventServerStart: true })
  const producer = yield* Metrics.makeProducer
  yield* Metrics.registerProducer(producer, () => exporter)
  // The exporter's own serializer settings: no prefix, no timestamps (Prometheus stamps a scrape itself).
  const serializer = new PrometheusSerializer()
  return {
    scrape: Effect.flatMap(Effect.promise(() => exporter.collect()), ({ errors, resourceMetrics }) =>
      Effect.as(
        errors.length === 0 ? Effect.void : Effect.logWarning("Some metrics could not be collected", errors),
        serializer.serialize(resourceMetrics)
      ))
  }
}).pipe(Effect.provide(Resource.layer({ serviceName: "plot-engine", serviceVersion: "0.1.0" })))

/**
 * The scrape as a layer.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer: Layer.Layer<Prometheus> = Layer.scoped(Prometheus, make)

/**
 * A scrape as an HTTP response: `200`, `text/plain; version=0.0.4`.
 *
 * @since 0.1.0
 * @category Prometheus
 */
export const response: Effect.Effect<HttpServerResponse.HttpServerResponse, never, Prometheus> = Effect.flatMap(
  Prometheus,
  ({ scrape }) => Effect.map(scrape, (text) => HttpServerResponse.text(text, { contentType }))
)
