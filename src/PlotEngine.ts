/**
 * The engine as an application runs it, the composition root the CLI and the example server share: configured
 * from the environment, over a gateway (the configured providers, or the embedded simulator when none is) and a
 * project store, with the rate limiter, the alerts, one HTTP client and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is
 * set, span and metric export over OTLP.
 *
 * An entry point of its own (`plot-engine/PlotEngine`): it loads Node's HTTP stack and the simulator, which a
 * host that composes its own layers does not need.
 *
 * @example
 * ```ts
 * import * as PlotEngine from "plot-engine/PlotEngine"
 * import { PlotGeneration, ProjectContextStore } from "plot-engine"
 * import * as NodeContext from "@effect/platform-node/NodeContext"
 * import { Effect, Layer } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const gateway = yield* PlotEngine.resolveGateway((line) => Effect.log(line))
 *   const engine = PlotEngine.layer({ gateway, store: ProjectContextStore.layerDirectory("./projects") })
 *   return yield* PlotGeneration.generate({ projectId: "my-novel", userPrompt: "What happens next?" }).pipe(
 *     Effect.provide(engine)
 *   )
 * }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))
 * ```
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as FileSystem from "@effect/platform/FileSystem"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { randomBytes } from "node:crypto"
import * as Alerts from "./Alerts.js"
import * as Deployments from "./Deployments.js"
import type * as Errors from "./Errors.js"
import * as ConfigValues from "./internal/configValues.js"
import * as PlotGeneration from "./PlotGeneration.js"
import type * as ProjectContextStore from "./ProjectContextStore.js"
import * as ProviderRateLimiter from "./ProviderRateLimiter.js"
import * as Providers from "./Providers.js"
import * as GatewaySimulator from "./simulator/GatewaySimulator.js"

/**
 * The gateway to use: the deployments of `PLOT_ENGINE_DEPLOYMENTS_FILE`, else the providers configured by their
 * variables, or, when none is configured, the embedded simulator with fresh keys, said through `log` (a scoped
 * resource: the simulator stops when the scope closes).
 *
 * @since 0.1.0
 * @category Gateway
 */
export const resolveGateway = Effect.fnUntraced(function*(log: (line: string) => Effect.Effect<void>) {
  const deployments = yield* Deployments.fromConfig
  if (Option.isSome(deployments)) return { deployments: deployments.value } satisfies Providers.GatewayConfig
  const configured = yield* Providers.gatewayConfig
  if (configured.openai !== undefined || configured.anthropic !== undefined) return configured
  const keys = { openai: `sim-${randomBytes(12).toString("hex")}`, anthropic: `sim-${randomBytes(12).toString("hex")}` }
  const context = yield* Layer.build(GatewaySimulator.layer({ apiKeys: keys }))
  const simulator = Context.get(context, GatewaySimulator.GatewaySimulator)
  yield* log(
    `Offline: no provider is configured, so plots come from the embedded gateway simulator at ${simulator.url}.`
  )
  return {
    openai: { apiKey: Redacted.make(keys.openai), baseUrl: simulator.openaiBaseUrl },
    anthropic: { apiKey: Redacted.make(keys.anthropic), baseUrl: simulator.anthropicBaseUrl }
  } satisfies Providers.GatewayConfig
})

/**
 * What the engine runs over.
 *
 * @since 0.1.0
 * @category Layers
 */
export interface Options<E, R> {
  readonly gateway: Providers.GatewayConfig
  readonly store: Layer.Layer<ProjectContextStore.ProjectContextStore, E, R>
  /**
   * The alerts (default `Alerts.layerConfig()`: the four rules, to a log line, and to a webhook when
   * `PLOT_ENGINE_ALERT_WEBHOOK_URL` is set). The engine's HTTP client is provided to them.
   */
  readonly alerts?: Layer.Layer<Alerts.Alerts, ConfigError.ConfigError, HttpClient.HttpClient> | undefined
  /**
   * The rate limiter's options besides its quotas (which come from the environment): a server that answers
   * people sets a `queueTimeout` below what its clients wait (browsers and proxies give up at about a minute).
   */
  readonly limiter?: Omit<ProviderRateLimiter.Options, "quotas"> | undefined
  /**
   * The models a request may pin (see `PlotGeneration.Options.pinnedModels`): a server whose clients send the
   * request sets `catalog`. Default: `PLOT_ENGINE_PINNED_MODELS`, else `any`.
   */
  readonly pinnedModels?: "any" | "catalog" | undefined
}

/**
 * Span and metric export over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the metrics every
 * `OTEL_METRIC_EXPORT_INTERVAL` milliseconds (default 60,000). The OpenTelemetry packages are loaded only then, so
 * that they can stay uninstalled where nobody exports.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerOtlpConfig: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(
  Effect.gen(function*() {
    // Checked here: the exporter refused a bad one only when it first exported, with a stack trace.
    const endpoint = yield* Config.option(ConfigValues.httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"))
    if (Option.isNone(endpoint)) return Layer.empty
    const metricsIntervalMs = yield* Config.integer("OTEL_METRIC_EXPORT_INTERVAL").pipe(
      Config.validate({ message: "Expected a positive number of milliseconds", validation: (ms) => ms > 0 }),
      Config.withDefault(60_000)
    )
    const OpenTelemetry = yield* Effect.tryPromise({
      try: () => import("./Telemetry/OpenTelemetry.js"),
      catch: (cause) =>
        ConfigError.InvalidData(
          ["OTEL_EXPORTER_OTLP_ENDPOINT"],
          `is set, but OpenTelemetry export could not be loaded (${String(cause)}). It needs @effect/opentelemetry ` +
            "@opentelemetry/api @opentelemetry/resources @opentelemetry/sdk-trace-base @opentelemetry/sdk-trace-node " +
            "@opentelemetry/sdk-metrics @opentelemetry/exporter-trace-otlp-http @opentelemetry/exporter-metrics-otlp-http"
        )
    })
    return OpenTelemetry.layerOtlp(endpoint.value, { metricsInterval: Duration.millis(metricsIntervalMs) })
  })
)

/**
 * The engine configured from the environment (`PlotGeneration.layerConfig`, `ProviderRateLimiter.layerConfig`)
 * over a gateway and a store, with one HTTP client for both providers. The providers and the rate limiter the
 * engine uses are in the output too, for a host's health checks (`Providers.configured`, `snapshot`).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = <E, R>(
  options: Options<E, R>
): Layer.Layer<
  PlotGeneration.PlotGeneration | Providers.Providers | ProviderRateLimiter.ProviderRateLimiter,
  ConfigError.ConfigError | Errors.RequestValidationError | E,
  FileSystem.FileSystem | R
> =>
  PlotGeneration.layerConfigWith({ pinnedModels: options.pinnedModels }).pipe(
    Layer.provideMerge(Layer.merge(
      Providers.layer(options.gateway),
      // The deployments' quotas per model, over the environment's quotas per provider.
      ProviderRateLimiter.layerConfig({
        ...options.limiter,
        keyQuotas: { ...Deployments.keyQuotas(Providers.deploymentsOf(options.gateway)), ...options.limiter?.keyQuotas }
      })
    )),
    Layer.provide(options.store),
    Layer.provide(options.alerts ?? Alerts.layerConfig()),
    Layer.provide(NodeHttpClient.layerUndici),
    Layer.provide(layerOtlpConfig)
  )
