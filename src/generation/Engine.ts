/**
 * What the stages of a generation share: the engine's collaborators, fixed when the service is made, and one
 * generation's values, fixed once its model is chosen. The stages are plain functions over these two records.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import type * as Alerts from "../Alerts.js"
import type * as Analytics from "../Analytics.js"
import type * as CircuitBreaker from "../CircuitBreaker.js"
import type * as Domain from "../Domain.js"
import type * as Errors from "../Errors.js"
import type * as ModelCatalog from "../ModelCatalog.js"
import type * as ProjectContextStore from "../ProjectContextStore.js"
import type * as PromptBuilder from "../PromptBuilder.js"
import type * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import type * as Providers from "../Providers.js"
import type * as RetryPolicy from "../RetryPolicy.js"
import type * as SpendLedger from "../SpendLedger.js"
import type * as TokenCount from "../TokenCount.js"
import type * as Prepare from "./Prepare.js"

/** The engine's collaborators and settings. */
export interface Engine {
  readonly providers: Providers.Service
  readonly store: ProjectContextStore.Service
  readonly limiter: ProviderRateLimiter.Service
  readonly alerts: Alerts.Service
  /** The host's analytics, when it provided one. */
  readonly analytics: Analytics.Service | undefined
  /** The projects' spend budgets, when the host provided a ledger. */
  readonly ledger: SpendLedger.Service | undefined
  /** The time to live asked of the prompt cache, and the prefixes known to be cached (see `Attempt`). */
  readonly promptCache: {
    readonly ttl: PromptBuilder.CacheTtl
    readonly cached: Map<string, { readonly tokens: number; readonly expiresAt: number }>
    /**
     * The deployment that answered a project's last call of a model, by `modelKey` and project, while its cache
     * lives: the next call goes there too (a cache lives on one deployment).
     */
    readonly homes: Map<string, { readonly deployment: string; readonly expiresAt: number }>
  }
  readonly breaker: CircuitBreaker.Service
  /**
   * Why a deployment's circuit was tripped, by `routeKey`, when its provider said it does not serve the model: a call
   * the open circuit skips then fails as that did (a pinned model gets the provider's 404, not a server error).
   */
  readonly notServed: Map<string, Errors.ModelNotFoundError>
  readonly tokens: TokenCount.Service
  readonly catalog: ModelCatalog.Catalog
  /** Whether a pinned model must be in the catalog (see `PlotGeneration.Options.pinnedModels`). */
  readonly pinnedModels: "any" | "catalog"
  readonly policy: RetryPolicy.Policy
  readonly maxContextTokens: number | undefined
  /** The reasoning effort asked of reasoning models, per kind of content (over `PromptBuilder`'s defaults). */
  readonly reasoningEfforts: Partial<Record<Domain.ContentKind, Domain.ReasoningEffort>> | undefined
}

/** Tells the caller of `generateStream` what happens (`generate` drops the events). */
export interface Emit {
  (event: Domain.GenerationEvent): Effect.Effect<void>
  /**
   * Several events, in order, told at once: the reader wakes once for all of them (a stream's network chunk may
   * complete parts of the outline, each an event and its Markdown; woken for each event, the reader took about a
   * third of the engine's CPU per delta).
   */
  readonly all: (events: ReadonlyArray<Domain.GenerationEvent>) => Effect.Effect<void>
}

/** An `Emit` from its two ways of telling. */
export const makeEmit = (
  one: (event: Domain.GenerationEvent) => Effect.Effect<void>,
  all: (events: ReadonlyArray<Domain.GenerationEvent>) => Effect.Effect<void>
): Emit => Object.assign(one, { all })

/**
 * How a call asks for the outline: as a structured object at once (`generate`), or as text streamed to the
 * caller while it is written (`generateStream`).
 */
export type Mode = "object" | "stream"

/** One generation, once its model is chosen. */
export interface Generation {
  readonly requestId: string
  readonly request: Domain.PlotRequest
  readonly context: Domain.ProjectContext
  readonly selection: Prepare.Selection
  readonly prompts: Prepare.Prompts
  /** When the generation began, on the `Clock`. */
  readonly startedAt: number
  readonly mode: Mode
  /** Its lane at the rate limiter. */
  readonly lane: "interactive" | "batch"
  readonly emit: Emit
  /** Whether a tracer is installed: the attempts' spans and their attributes are made only then. */
  readonly traced: boolean
}

/**
 * The key of a model in the engine's per-model state (its budgets after a failure, the deployment that holds a
 * project's prompt cache): never parsed back. The circuit breaker's is per deployment (`routeKey`).
 */
export const modelKey = (model: Pick<ModelCatalog.ModelInfo, "provider" | "id">): string =>
  `${model.provider}\u0000${model.id}`

/** Names a model on one deployment: its circuit breaker and its prompt cache are the deployment's. */
export const routeKey = (route: Pick<Providers.Route, "deployment" | "provider" | "model">): string =>
  `${route.deployment}\u0000${route.provider}\u0000${route.model}`

/** A model as people read it, in events and warnings. */
export const modelLabel = (model: Pick<ModelCatalog.ModelInfo, "provider" | "id">): string =>
  `${model.provider}/${model.id}`

/** How far through a generation each stage is, for progress bars. */
export const stageProgress: Readonly<Record<Domain.Stage, number>> = {
  retrieving_context: 10,
  selecting_model: 20,
  building_prompt: 30,
  generating: 40,
  parsing: 90
}

const stageMessages: Readonly<Record<Domain.Stage, string>> = {
  retrieving_context: "Gathering relevant project context...",
  selecting_model: "Choosing the model for this request...",
  building_prompt: "Preparing the request...",
  generating: "AI is generating your plot content...",
  parsing: "Reading the result..."
}

/** The `Emit` of a generation nobody watches (`generate`): its events are not even made. */
export const silent: Emit = makeEmit(() => Effect.void, () => Effect.void)

/** Whether somebody hears a generation's events. */
export const listening = (emit: Emit): boolean => emit !== silent

/** Tells the caller a stage began. */
export const progress = (emit: Emit, stage: Domain.Stage): Effect.Effect<void> =>
  emit === silent
    ? Effect.void
    : emit({ _tag: "Progress", stage, message: stageMessages[stage], progress: stageProgress[stage] })

/**
 * `effects` one after another, for what they do; those that are `Effect.void` (a stage with nothing to do: nobody
 * listening, no limiter, no cache to remember) are left out, each two steps of the runtime fewer.
 */
export const sequence = <E>(...effects: ReadonlyArray<Effect.Effect<void, E>>): Effect.Effect<void, E> => {
  let all: Effect.Effect<void, E> = Effect.void
  for (const effect of effects) {
    if (effect !== Effect.void) all = all === Effect.void ? effect : Effect.zipRight(all, effect)
  }
  return all
}

/**
 * `f` of the `Clock`'s time now: `Clock.currentTimeMillis` then `flatMap`, in one step of the runtime instead of
 * three (the success path reads the time at each stage).
 */
export const withNow = <A, E, R>(f: (now: number) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.clockWith((clock) => f(clock.unsafeCurrentTimeMillis()))
