/**
 * The plot generation service: validate the request, retrieve the project's context, choose a model, build the
 * prompt, call the model through the fallback chain, parse, and fall back to a template when the AI fails for
 * good. `generateStream` reports every stage as it happens.
 *
 * The pipeline's stages are plain functions under `generation/`: `Prepare` (request, context, model, prompts),
 * `Chain` (the first attempt, then retries and hops), `Attempt` (one call through the breaker and the rate
 * limiter, under one timer) and `Outcome` (the result or the template, metrics and alerts).
 *
 * @example
 * ```ts
 * import { Alerts, PlotGeneration, ProjectContextStore, ProviderRateLimiter, Providers } from "plot-engine"
 * import * as NodeContext from "@effect/platform-node/NodeContext"
 * import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
 * import { Effect, Layer } from "effect"
 *
 * const PlotEngineLive = PlotGeneration.layer().pipe(
 *   Layer.provide(Providers.layerConfig), // OPENAI_API_KEY, ANTHROPIC_API_KEY, base URLs
 *   Layer.provide(ProjectContextStore.layerDirectory("./projects")),
 *   Layer.provide(ProviderRateLimiter.layerConfig()), // the quotas, from PLOT_ENGINE_* variables
 *   Layer.provide(Alerts.layer()),
 *   Layer.provide(NodeHttpClient.layerUndici),
 *   Layer.provide(NodeContext.layer) // the file system the project store reads
 * )
 *
 * const program = PlotGeneration.generate({ projectId: "my-novel", userPrompt: "What happens at the wedding?" })
 * // Effect<PlotResult, Errors.GenerationError, PlotGeneration>
 * Effect.runPromise(program.pipe(Effect.provide(PlotEngineLive)))
 * ```
 *
 * @since 0.1.0
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Chunk from "effect/Chunk"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as Alerts from "./Alerts.js"
import * as Analytics from "./Analytics.js"
import * as CircuitBreaker from "./CircuitBreaker.js"
import * as ContextBudget from "./ContextBudget.js"
import type * as Domain from "./Domain.js"
import type * as Errors from "./Errors.js"
import * as Chain from "./generation/Chain.js"
import * as Engine from "./generation/Engine.js"
import * as Outcome from "./generation/Outcome.js"
import * as Prepare from "./generation/Prepare.js"
import * as Tracing from "./internal/tracing.js"
import * as ModelCatalog from "./ModelCatalog.js"
import * as ProjectContextStore from "./ProjectContextStore.js"
import type * as PromptBuilder from "./PromptBuilder.js"
import * as ProviderRateLimiter from "./ProviderRateLimiter.js"
import * as Providers from "./Providers.js"
import * as RetryPolicy from "./RetryPolicy.js"
import * as SpendLedger from "./SpendLedger.js"
import * as TokenCount from "./TokenCount.js"

// =============================================================================
// Service
// =============================================================================

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Generates plot content for a request; a failure is one of the typed `GenerationError`s. */
  readonly generate: (
    request: Domain.PlotRequestInput,
    options?: Domain.GenerateOptions
  ) => Effect.Effect<Domain.PlotResult, Errors.GenerationError>
  /** The same generation, as the events of its progress, ending with `Completed`. */
  readonly generateStream: (
    request: Domain.PlotRequestInput,
    options?: Domain.GenerateOptions
  ) => Stream.Stream<Domain.GenerationEvent, Errors.GenerationError>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class PlotGeneration extends Context.Tag("plot-engine/PlotGeneration")<PlotGeneration, Service>() {}

/**
 * What the service needs: the providers to call, where projects come from, the rate limiter every call goes
 * through (`ProviderRateLimiter.layerUnlimited` to go without) and the alerts that hear how generations went
 * (`Alerts.layerDisabled` to go without).
 *
 * @since 0.1.0
 * @category Models
 */
export type Requirements =
  | Providers.Providers
  | ProjectContextStore.ProjectContextStore
  | ProviderRateLimiter.ProviderRateLimiter
  | Alerts.Alerts

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options {
  /** The models known to the engine (default `ModelCatalog.defaultCatalog`). */
  readonly catalog?: ModelCatalog.Catalog | undefined
  /**
   * The models a request may pin. `any` (the default): one the catalog lacks (a fine-tune, a model newer than the
   * catalog) is sent as named, with a conservative window and an unknown price. `catalog`: only the catalog's, any
   * other refused with a `RequestValidationError` on `model`; for a server whose clients choose the model, where
   * each name a client made up would be a rate-limiter key with a quota of its own, a circuit and a metric series.
   * Either way, a model the catalog has for the other provider is refused.
   */
  readonly pinnedModels?: "any" | "catalog" | undefined
  /** The most tokens of project context sent (default `ContextBudget.defaultMaxContextTokens`, 32,000). */
  readonly maxContextTokens?: number | undefined
  /**
   * How to count tokens for an encoding model (see `TokenCount.encodingModel`); default the real tokenizer.
   * Counts of the project's texts and of the prompt's fixed parts are remembered either way.
   */
  readonly tokenCount?: ((encodingModel: string) => TokenCount.Count) | undefined
  /** Retries, budgets and deadline (default `RetryPolicy.defaults`). */
  readonly retryPolicy?: RetryPolicy.Policy | undefined
  /** The circuit breaker per deployment of a model (default 10 consecutive failures, 30 seconds). */
  readonly circuitBreaker?: CircuitBreaker.Options | undefined
  /**
   * The reasoning effort asked of reasoning models, per kind of content (default
   * `PromptBuilder.defaultReasoningEffort`: `medium` for an outline, `low` for beats and suggestions).
   */
  readonly reasoningEffort?: Partial<Record<Domain.ContentKind, Domain.ReasoningEffort>> | undefined
  /**
   * How long Anthropic keeps a project's prompt prefix cached (default `5m`; `1h` costs twice the input price to
   * write, and pays when a project's generations come more than 5 minutes apart).
   */
  readonly promptCacheTtl?: PromptBuilder.CacheTtl | undefined
}

/**
 * How far through a generation each stage is, for progress bars.
 *
 * @since 0.1.0
 * @category Events
 */
export const stageProgress: Readonly<Record<Domain.Stage, number>> = Engine.stageProgress

// =============================================================================
// Constructors
// =============================================================================

/**
 * One generation, from the request to its result (or typed failure), its stages told to `emit`. The log lines of
 * its calls, the models' own too, and the engine's own lines about it, say which request and project they are
 * about (see `Attempt`, `Outcome`).
 */
const runGeneration = (
  engine: Engine.Engine,
  input: Domain.PlotRequestInput,
  generateOptions: Domain.GenerateOptions,
  emit: Engine.Emit,
  mode: Engine.Mode,
  traced: boolean
): Effect.Effect<Domain.PlotResult, Errors.GenerationError> =>
  Effect.flatMap(
    Prepare.start(engine, input, { emit, mode, lane: generateOptions.lane ?? "interactive", traced }),
    (generation) => {
      const state = Ref.unsafeMake(Chain.initial)
      const useFallback = generateOptions.useFallback ?? true
      const run = Chain.run(engine, generation, state).pipe(
        Effect.matchEffect({
          onSuccess: (success) =>
            Effect.flatMap(Ref.get(state), (chain) => Outcome.succeeded(engine, generation, chain, success)),
          onFailure: (error) =>
            Effect.flatMap(Ref.get(state), (chain) => Outcome.failed(engine, generation, chain, error, useFallback))
        })
      )
      if (engine.ledger === undefined) return run
      // The budget pays what every billed attempt cost, however the generation ends (interrupted while reserving
      // too: the reservation is then settled as it is made, rather than held until the ledger's hold expires).
      return Effect.acquireUseRelease(
        Prepare.reserveBudget(engine.ledger, generation),
        () => run,
        (reservation) => Effect.flatMap(Ref.get(state), (chain) => reservation.settle(Outcome.knownCost(chain.billing)))
      )
    }
  )

/**
 * Builds the service over its collaborators (see `Requirements`).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const providers = yield* Providers.Providers
  const engine: Engine.Engine = {
    providers,
    store: yield* ProjectContextStore.ProjectContextStore,
    limiter: yield* ProviderRateLimiter.ProviderRateLimiter,
    alerts: yield* Alerts.Alerts,
    analytics: Option.getOrUndefined(yield* Effect.serviceOption(Analytics.Analytics)),
    ledger: Option.getOrUndefined(yield* Effect.serviceOption(SpendLedger.SpendLedger)),
    promptCache: { ttl: options.promptCacheTtl ?? "5m", cached: new Map(), homes: new Map() },
    breaker: yield* CircuitBreaker.make(options.circuitBreaker),
    notServed: new Map(),
    tokens: yield* TokenCount.make({ count: options.tokenCount }),
    // The models some deployment serves: the selection and the fallback chain choose among them only.
    catalog: (options.catalog ?? ModelCatalog.defaultCatalog).filter((model) => providers.routes(model).length > 0),
    pinnedModels: options.pinnedModels ?? "any",
    policy: options.retryPolicy ?? RetryPolicy.defaults,
    maxContextTokens: options.maxContextTokens,
    reasoningEfforts: options.reasoningEffort
  }

  // A span only when a tracer is installed (`Effect.fn` would also capture its call site on every call).
  const generate = (request: Domain.PlotRequestInput, generateOptions?: Domain.GenerateOptions) =>
    Tracing.spanned(
      "PlotGeneration.generate",
      { captureStackTrace: false },
      (traced) => runGeneration(engine, request, generateOptions ?? {}, Engine.silent, "object", traced)
    )

  const generateStream = (request: Domain.PlotRequestInput, generateOptions?: Domain.GenerateOptions) =>
    Stream.unwrapScoped(
      Effect.gen(function*() {
        const mailbox = yield* Mailbox.make<Domain.GenerationEvent, Errors.GenerationError>()
        // Every event goes as a chunk, a single one too: effect 3.22's mailbox, given a chunk while single messages
        // wait in it (a reader slower than the generation), gave those twice (patched here, but not in a host's
        // node_modules). And a mailbox would keep an array as its own buffer, and push later events into it.
        const emit = Engine.makeEmit(
          (event) => Effect.asVoid(mailbox.offerAll(Chunk.of(event))),
          (events) => Effect.asVoid(mailbox.offerAll(Chunk.unsafeFromArray(events)))
        )
        yield* Tracing.spanned(
          "PlotGeneration.generateStream",
          { captureStackTrace: false },
          (traced) =>
            Effect.flatMap(
              runGeneration(engine, request, generateOptions ?? {}, emit, "stream", traced),
              (result) => mailbox.offerAll(Chunk.of<Domain.GenerationEvent>({ _tag: "Completed", result }))
            )
        ).pipe(
          Mailbox.into(mailbox),
          Effect.forkScoped
        )
        return Mailbox.toStream(mailbox)
      })
    )

  return PlotGeneration.of({ generate, generateStream })
})

// =============================================================================
// Accessors
// =============================================================================

/**
 * Generates plot content with the `PlotGeneration` in context.
 *
 * @example
 * ```ts
 * import { PlotGeneration } from "plot-engine"
 * import { Effect } from "effect"
 *
 * const outline = PlotGeneration.generate({ projectId: "my-novel", userPrompt: "Outline the next chapter" }).pipe(
 *   Effect.map((result) => result.outline)
 * )
 * ```
 *
 * @since 0.1.0
 * @category Accessors
 */
export const generate = (
  request: Domain.PlotRequestInput,
  options?: Domain.GenerateOptions
): Effect.Effect<Domain.PlotResult, Errors.GenerationError, PlotGeneration> =>
  Effect.flatMap(PlotGeneration, (service) => service.generate(request, options))

/**
 * The events of a generation with the `PlotGeneration` in context, ending with `Completed`.
 *
 * @example
 * ```ts
 * import { PlotGeneration } from "plot-engine"
 * import { Effect, Stream } from "effect"
 *
 * const shown = PlotGeneration.generateStream({ projectId: "my-novel", userPrompt: "What happens next?" }).pipe(
 *   Stream.runForEach((event) => Effect.log(event._tag === "Progress" ? event.message : event._tag))
 * )
 * ```
 *
 * @since 0.1.0
 * @category Accessors
 */
export const generateStream = (
  request: Domain.PlotRequestInput,
  options?: Domain.GenerateOptions
): Stream.Stream<Domain.GenerationEvent, Errors.GenerationError, PlotGeneration> =>
  Stream.unwrap(Effect.map(PlotGeneration, (service) => service.generateStream(request, options)))

// =============================================================================
// Layers
// =============================================================================

/**
 * The service over its collaborators.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options = {}): Layer.Layer<PlotGeneration, never, Requirements> =>
  Layer.effect(PlotGeneration, make(options))

/**
 * The service configured from the environment: `PLOT_ENGINE_MAX_CONTEXT_TOKENS` (default 32,000), the
 * catalog of `ModelCatalog.load` (`PLOT_ENGINE_MODELS_FILE`, `PLOT_ENGINE_MODELS`), the retry budgets of
 * `RetryPolicy.config` and `PLOT_ENGINE_PINNED_MODELS` (`any` or `catalog`, see `Options.pinnedModels`; the
 * option, when given, wins).
 *
 * @since 0.2.0
 * @category Layers
 */
export const layerConfigWith = (options: Pick<Options, "pinnedModels"> = {}): Layer.Layer<
  PlotGeneration,
  ConfigError.ConfigError | Errors.RequestValidationError,
  Requirements | FileSystem.FileSystem
> =>
  Layer.effect(
    PlotGeneration,
    Effect.gen(function*() {
      const maxContextTokens = yield* Config.integer("PLOT_ENGINE_MAX_CONTEXT_TOKENS").pipe(
        Config.validate({ message: "must be a positive number of tokens", validation: (n) => n > 0 }),
        Config.withDefault(ContextBudget.defaultMaxContextTokens)
      )
      const catalog = yield* ModelCatalog.load()
      const retryPolicy = yield* RetryPolicy.config
      const pinnedModels = options.pinnedModels ??
        (yield* Config.literal("any", "catalog")("PLOT_ENGINE_PINNED_MODELS").pipe(Config.withDefault("any" as const)))
      return yield* make({ catalog, maxContextTokens, retryPolicy, pinnedModels })
    })
  )

/**
 * `layerConfigWith` with nothing over the environment.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig: Layer.Layer<
  PlotGeneration,
  ConfigError.ConfigError | Errors.RequestValidationError,
  Requirements | FileSystem.FileSystem
> = layerConfigWith()
