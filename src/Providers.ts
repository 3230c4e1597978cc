/**
 * The AI gateway: which providers are configured, and a `LanguageModel` for any `(provider, model)` chosen
 * at run time, through the real `@effect/ai-openai` and `@effect/ai-anthropic` clients over one HTTP client.
 * Tests and benchmarks swap in other models with `layerModels`.
 *
 * @since 0.1.0
 */
import * as AnthropicClient from "@effect/ai-anthropic/AnthropicClient"
import * as AnthropicLanguageModel from "@effect/ai-anthropic/AnthropicLanguageModel"
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as OpenAiLanguageModel from "@effect/ai-openai/OpenAiLanguageModel"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import { globalValue } from "effect/GlobalValue"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Deployments from "./Deployments.js"
import type * as Domain from "./Domain.js"
import * as Errors from "./Errors.js"
import * as ConfigValues from "./internal/configValues.js"
import * as Wire from "./internal/wire.js"

/**
 * How to reach one provider. `baseUrl` defaults to the provider's public API (OpenAI's includes `/v1`,
 * Anthropic's does not).
 *
 * @since 0.1.0
 * @category Configuration
 */
export interface ProviderSettings {
  readonly apiKey: Redacted.Redacted
  readonly baseUrl?: string | undefined
}

/**
 * The providers that are configured; one without settings is never offered.
 *
 * @since 0.1.0
 * @category Configuration
 */
export interface GatewayConfig {
  readonly openai?: ProviderSettings | undefined
  readonly anthropic?: ProviderSettings | undefined
  /**
   * The deployments to call (a deployments file, see `Deployments`); when given, `openai` and `anthropic` are not
   * used. Without it, each provider with settings is one deployment, named after the provider.
   */
  readonly deployments?: ReadonlyArray<Deployments.Deployment> | undefined
}

/**
 * The deployments of a configuration: its own, or one per provider given settings.
 *
 * @since 0.2.0
 * @category Configuration
 */
export const deploymentsOf = (config: GatewayConfig): ReadonlyArray<Deployments.Deployment> =>
  config.deployments ?? Deployments.shorthand(config)

/**
 * The parameters sent with every call: a max output token limit and, where the model accepts one, a
 * temperature.
 *
 * @since 0.1.0
 * @category Models
 */
export interface ModelParameters {
  readonly maxOutputTokens: number
  readonly temperature?: number | undefined
  /** For a reasoning model: how much to reason (`reasoning.effort`). */
  readonly reasoningEffort?: Domain.ReasoningEffort | undefined
  /**
   * Requests that share a prompt prefix share this key (OpenAI's `prompt_cache_key`), so that they reach the
   * machines that hold its cache. Anthropic caches up to the prompt's breakpoint instead.
   */
  readonly promptCacheKey?: string | undefined
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** The providers that can be called (those with a deployment), in order of preference. */
  readonly configured: ReadonlyArray<Domain.ProviderName>
  /** The deployments that serve a catalog model, in the order they were configured. */
  readonly routes: (model: { readonly provider: Domain.ProviderName; readonly id: string }) => ReadonlyArray<Route>
  /**
   * A language model for a provider's model on a deployment (default the first that serves it), with its parameters
   * applied to every call.
   */
  readonly languageModel: (
    provider: Domain.ProviderName,
    model: string,
    parameters: ModelParameters,
    deployment?: string | undefined
  ) => Effect.Effect<LanguageModel.Service, Errors.ProviderNotConfiguredError>
}

/**
 * A deployment that serves a model: where a call of it can go.
 *
 * @since 0.2.0
 * @category Models
 */
export interface Route {
  readonly deployment: string
  readonly provider: Domain.ProviderName
  /** The catalog's id of the model. */
  readonly model: string
  /** The deployment's share among the routes of the model. */
  readonly weight: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export class Providers extends Context.Tag("plot-engine/Providers")<Providers, Service>() {}

/**
 * Makes a language model for one provider's model.
 *
 * @since 0.1.0
 * @category Models
 */
export type ModelFactory = (model: string, parameters: ModelParameters) => Effect.Effect<LanguageModel.Service>

/** A deployment with the factory of its models (which it is given under the names it serves them by). */
interface Served {
  readonly deployment: Deployments.Deployment
  readonly factory: ModelFactory
}

const fromDeployments = (served: ReadonlyArray<Served>): Service => {
  const configured = (["openai", "anthropic"] as const).filter((provider) =>
    served.some(({ deployment }) => Deployments.providerOf(deployment.dialect) === provider)
  )
  const routesByModel = new Map<string, ReadonlyArray<Route>>()
  const routes = (model: { readonly provider: Domain.ProviderName; readonly id: string }) => {
    const key = `${model.provider}\u0000${model.id}`
    let known = routesByModel.get(key)
    if (known === undefined) {
      known = served.flatMap(({ deployment }) =>
        Deployments.servedName(deployment, model) === undefined
          ? []
          : [{ deployment: deployment.id, provider: model.provider, model: model.id, weight: deployment.weight }]
      )
      if (routesByModel.size < 1_000) routesByModel.set(key, known)
    }
    return known
  }
  return Providers.of({
    configured,
    routes,
    languageModel: (provider, model, parameters, deployment) => {
      const target = { provider, id: model }
      const chosen = served.find((entry) =>
        (deployment === undefined || entry.deployment.id === deployment) &&
        Deployments.servedName(entry.deployment, target) !== undefined
      )
      return chosen === undefined
        ? Effect.fail(new Errors.ProviderNotConfiguredError({ provider }))
        : chosen.factory(Deployments.servedName(chosen.deployment, target)!, parameters)
    }
  })
}

/** Fakes or other transports, one deployment per provider, named after it and serving every model. */
const fromFactories = (factories: Partial<Record<Domain.ProviderName, ModelFactory>>): Service =>
  fromDeployments((["openai", "anthropic"] as const).flatMap((provider) => {
    const factory = factories[provider]
    return factory === undefined ? [] : [{
      deployment: Deployments.shorthand({ [provider]: { apiKey: Redacted.make("") } })[0]!,
      factory
    }]
  }))

/**
 * The clients' language models are stateless (the HTTP client and the parameters, fixed when made), so one
 * is made per model and parameters and kept: making one per attempt cost tens of microseconds. A model that sends
 * the prompt cache key (`withCacheKey`: OpenAI's, one per project) is made per key too. A thousand kinds at most;
 * past that the memory starts again.
 */
const remembered = (factory: ModelFactory, withCacheKey = false): ModelFactory => {
  const models = new Map<string, LanguageModel.Service>()
  return (model, parameters) => {
    const key = `${model}\u0000${parameters.maxOutputTokens}\u0000${parameters.temperature ?? ""}\u0000${
      parameters.reasoningEffort ?? ""
    }\u0000${withCacheKey ? parameters.promptCacheKey ?? "" : ""}`
    const known = models.get(key)
    if (known !== undefined) return Effect.succeed(known)
    return Effect.tap(factory(model, parameters), (service) =>
      Effect.sync(() => {
        if (models.size >= 1_000) models.clear()
        models.set(key, service)
      }))
  }
}

// =============================================================================
// Response headers
// =============================================================================

/**
 * Response headers as the HTTP client records them: lower-case names.
 *
 * @since 0.1.0
 * @category Response headers
 */
export type Headers = Readonly<Record<string, string | undefined>>

/**
 * Who hears the headers of the responses a call receives; by default nobody.
 *
 * @since 0.1.0
 * @category Response headers
 */
export type HeadersObserver = (headers: Headers) => Effect.Effect<void>

/**
 * Who hears the headers of the responses the current fiber receives (see `observeHeaders`): a fiber made for one call
 * can be started with it set.
 *
 * @since 0.2.0
 * @category Response headers
 */
export const currentHeadersObserver: FiberRef.FiberRef<HeadersObserver> = globalValue(
  Symbol.for("plot-engine/Providers/currentHeadersObserver"),
  () => FiberRef.unsafeMake<HeadersObserver>(() => Effect.void)
)

/**
 * Lets `observer` hear the headers of every response `effect` receives: the engine passes each call's to its
 * rate limiter, for that call's provider and model, so that the limiter learns what the provider has left.
 *
 * @example
 * ```ts
 * import { Providers } from "plot-engine"
 * import { Effect } from "effect"
 *
 * const call = Effect.void // a call through a model of `Providers`
 * const logged = call.pipe(
 *   Providers.observeHeaders((headers) => Effect.log(headers["x-ratelimit-remaining-requests"]))
 * )
 * ```
 *
 * @since 0.1.0
 * @category Response headers
 */
export const observeHeaders =
  (observer: HeadersObserver) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.locally(effect, currentHeadersObserver, observer)

/**
 * Lets `observer` hear the headers of every response the current fiber receives from now on, for a fiber of its own
 * that makes one call (no restoring afterwards, which `observeHeaders` pays for).
 *
 * @since 0.1.0
 * @category Response headers
 */
export const setHeadersObserver = (observer: HeadersObserver): Effect.Effect<void> =>
  FiberRef.set(currentHeadersObserver, observer)

/**
 * Reports a response's headers to the current call's observer. The real clients of `make` call it for every
 * response; a `ModelFactory` over another transport can too.
 *
 * @since 0.1.0
 * @category Response headers
 */
export const reportHeaders = (headers: Headers): Effect.Effect<void> =>
  FiberRef.getWith(currentHeadersObserver, (observe) => observe(headers))

// =============================================================================
// The real clients
// =============================================================================

/**
 * Builds the real clients for the configured providers.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = Effect.fnUntraced(function*(config: GatewayConfig) {
  const served: Array<Served> = []
  for (const deployment of deploymentsOf(config)) {
    // Whatever their format, the keys are removed from every error, log, span and answer that could quote them.
    Wire.registerSecret(Redacted.value(deployment.apiKey))
    served.push({ deployment, factory: yield* clientFactory(deployment) })
  }
  return fromDeployments(served)
})

/** The factory of a deployment's models, over a client of its own (its key, base URL and headers). */
const clientFactory = Effect.fnUntraced(function*(deployment: Deployments.Deployment) {
  const headers = deployment.headers
  // Every response's headers go to whoever observes the call (see `observeHeaders`); the deployment's own headers
  // go with every request.
  const transformClient = (client: HttpClient.HttpClient) =>
    HttpClient.tap(
      Object.keys(headers).length === 0
        ? client
        : HttpClient.mapRequest(client, HttpClientRequest.setHeaders(headers)),
      (response) => reportHeaders(response.headers)
    )
  if (deployment.dialect === "openai-responses") {
    const client = yield* OpenAiClient.make({ apiKey: deployment.apiKey, apiUrl: deployment.baseUrl, transformClient })
    // The prompt cache key is the model's own config, not provided to each call: a stream given a service runs every
    // effect of its channel with it provided anew, several a network chunk.
    return remembered((model, parameters) =>
      OpenAiLanguageModel.make({
        model,
        config: {
          max_output_tokens: parameters.maxOutputTokens,
          ...(parameters.temperature === undefined ? {} : { temperature: parameters.temperature }),
          ...(parameters.reasoningEffort === undefined ? {} : { reasoning: { effort: parameters.reasoningEffort } }),
          ...(parameters.promptCacheKey === undefined ? {} : { prompt_cache_key: parameters.promptCacheKey })
        }
      }).pipe(Effect.provideService(OpenAiClient.OpenAiClient, client)), true)
  }
  const client = yield* AnthropicClient.make({ apiKey: deployment.apiKey, apiUrl: deployment.baseUrl, transformClient })
  return remembered((model, parameters) =>
    AnthropicLanguageModel.make({
      model,
      config: {
        max_tokens: parameters.maxOutputTokens,
        ...(parameters.temperature === undefined ? {} : { temperature: parameters.temperature })
      }
    }).pipe(Effect.provideService(AnthropicClient.AnthropicClient, client))
  )
})

/**
 * The providers of an explicit configuration, over the `HttpClient` in context.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (config: GatewayConfig): Layer.Layer<Providers, never, HttpClient.HttpClient> =>
  Layer.scoped(Providers, make(config))

const providerSettings = (
  keyName: string,
  urlName: string,
  example: string
): Config.Config<ProviderSettings | undefined> =>
  Config.all({
    apiKey: Config.option(Config.redacted(keyName)),
    baseUrl: Config.option(ConfigValues.httpUrl(urlName, example))
  }).pipe(
    Config.map(({ apiKey, baseUrl }) =>
      // An empty key (`OPENAI_API_KEY=`) is no key: configured, the provider would answer every call with a 401.
      Option.isNone(apiKey) || Redacted.value(apiKey.value).trim() === ""
        ? undefined
        : { apiKey: apiKey.value, baseUrl: Option.getOrUndefined(baseUrl) }
    )
  )

/**
 * The gateway configuration from the environment: `OPENAI_API_KEY`, `OPENAI_BASE_URL` (with `/v1`),
 * `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`. A provider without a key (or with an empty one) is not configured; a base
 * URL that is not an http(s) URL is refused, naming its variable.
 *
 * @since 0.1.0
 * @category Configuration
 */
export const gatewayConfig: Config.Config<GatewayConfig> = Config.all({
  openai: providerSettings("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1"),
  anthropic: providerSettings("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "https://api.anthropic.com")
})

/**
 * The providers configured in the environment (see `gatewayConfig`).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig: Layer.Layer<Providers, ConfigError.ConfigError, HttpClient.HttpClient> = Layer.scoped(
  Providers,
  Effect.flatMap(gatewayConfig, make)
)

/**
 * Providers backed by given model factories: fakes in tests, the in-process simulator in benchmarks.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerModels = (factories: Partial<Record<Domain.ProviderName, ModelFactory>>): Layer.Layer<Providers> =>
  Layer.succeed(Providers, fromFactories(factories))

/**
 * Deployments whose models come from given factories (each given the name its deployment serves a model by): fakes
 * of several deployments in tests, or deployments over another transport.
 *
 * @since 0.2.0
 * @category Layers
 */
export const layerDeploymentModels = (
  deployments: ReadonlyArray<{ readonly deployment: Deployments.Deployment; readonly models: ModelFactory }>
): Layer.Layer<Providers> =>
  Layer.succeed(
    Providers,
    fromDeployments(deployments.map(({ deployment, models }) => ({ deployment, factory: models })))
  )
