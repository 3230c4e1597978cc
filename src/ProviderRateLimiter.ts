/**
 * The Semaphore-plus-RateLimiter layer: per key (a provider, or a provider's model), concurrency permits handed
 * out in arrival order from a FIFO queue by the key's own state machine (a waiter holds no fiber, timer or scope of
 * its own; a `Semaphore` woke every waiter on each release, quadratic under contention), and token buckets for
 * requests per minute and tokens per minute (OpenAI style: prompt plus max output, counted at admission) or input
 * and output tokens per minute (Anthropic style): in memory, or in `@effect/experimental`'s `RateLimiter` store
 * (Redis) for a fleet.
 *
 * Admission reserves the estimate up front and reconciles it with the reported usage afterwards. Waiters are
 * served first come, first served: the permit queue is fair, and a reservation is a place in the buckets'
 * virtual schedule, so nobody polls. A waiter that is interrupted gives back what it reserved; a waiter past
 * the queue timeout fails with a local `RateLimitError`. A provider 429 closes the key's gate for every caller
 * until its retry-after, and rate-limit headers lower the local budget when the provider knows less is left.
 *
 * @since 0.1.0
 */
import * as RateLimiter from "@effect/experimental/RateLimiter"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import type * as Domain from "./Domain.js"
import type * as Errors from "./Errors.js"
import * as ConfigValues from "./internal/configValues.js"
import * as LimiterKeys from "./internal/limiterKeys.js"
import * as LimiterLearning from "./internal/limiterLearning.js"
import * as Metrics from "./internal/metrics.js"
import * as Sweep from "./internal/sweep.js"
import * as TokenBuckets from "./internal/tokenBuckets.js"
import * as Tracing from "./internal/tracing.js"
import type * as Wire from "./internal/wire.js"
import * as ModelCatalog from "./ModelCatalog.js"
import * as QuotaSignals from "./QuotaSignals.js"

// =============================================================================
// Quotas
// =============================================================================

/**
 * A provider's quota. OpenAI-style quotas set `tokensPerMinute`; Anthropic-style ones set
 * `inputTokensPerMinute` and `outputTokensPerMinute`.
 *
 * @since 0.1.0
 * @category Quotas
 */
export interface Quota {
  readonly requestsPerMinute: number
  readonly tokensPerMinute?: number | undefined
  readonly inputTokensPerMinute?: number | undefined
  readonly outputTokensPerMinute?: number | undefined
  readonly maxConcurrent: number
}

/**
 * 60 requests and 90,000 tokens a minute, 5 at a time, for OpenAI, and Anthropic's first paid tier shape
 * (50 RPM, 40,000 input and 8,000 output tokens per minute) for Anthropic.
 *
 * @since 0.1.0
 * @category Quotas
 */
export const defaultQuotas: Readonly<Record<Domain.ProviderName, Quota>> = {
  openai: { requestsPerMinute: 60, tokensPerMinute: 90_000, maxConcurrent: 5 },
  anthropic: { requestsPerMinute: 50, inputTokensPerMinute: 40_000, outputTokensPerMinute: 8_000, maxConcurrent: 5 }
}

/**
 * What one request is expected to use: the prompt's tokens and the output limit sent with it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Estimate {
  readonly inputTokens: number
  readonly outputTokens: number
}

/**
 * Who a request is for.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Target {
  readonly provider: Domain.ProviderName
  readonly model: string
  /**
   * The deployment the request goes to (see `Deployments`): each has its own quota. Default the provider's own,
   * named after the provider.
   */
  readonly deployment?: string | undefined
}

/**
 * The class of a request: an `interactive` one (a writer at the screen) goes ahead of queued `batch` ones and has
 * permits kept for it (`Options.interactiveShare`); a `batch` one uses what is idle, and is admitted only once the
 * buckets hold what it takes, so that it never makes an interactive one wait behind its debt.
 *
 * @since 0.2.0
 * @category Models
 */
export type Lane = "interactive" | "batch"

/**
 * How long a caller will wait to be admitted.
 *
 * @since 0.1.0
 * @category Models
 */
export interface AdmitOptions {
  /** The request's lane (default `interactive`). */
  readonly lane?: Lane | undefined
  /**
   * The caller's own deadline (epoch milliseconds). A wait that cannot end by then, or by the queue timeout when
   * that comes first, fails with a local `RateLimitError` whose `retryAfterMs` is the wait foreseen: at once when
   * the estimate shows it (the quota is saturated: the caller learns it now, not at its deadline), else when the
   * time runs out.
   */
  readonly until?: number | undefined
  /**
   * Told when the caller has to wait: its place among the waiters of its key and the wait foreseen, then again
   * every 5 seconds while it queues for a permit, and once more when it holds a permit and waits for the budget.
   */
  readonly onQueued?: ((queued: Queued) => Effect.Effect<void>) | undefined
  /**
   * The longest pause a provider 429 may impose on this caller, in milliseconds. When the key's gate is closed
   * for longer, the caller is refused at once with a local `RateLimitError` carrying the wait, rather than slept:
   * the engine passes its policy's cap on one delay, so that the fallback chain moves on to a model that is not
   * paused.
   */
  readonly maxPause?: number | undefined
}

/**
 * A caller's wait for admission: its place among the waiters of its key (1 is next) and how long the wait should
 * take, in milliseconds (an estimate).
 *
 * @since 0.1.0
 * @category Models
 */
export interface Queued {
  readonly place: number
  readonly expectedWaitMs: number
}

/**
 * An admitted request: `reconcile` replaces the estimate with what the provider reported once the call was made;
 * `cancel` gives every reservation back (the request too) when the call was not sent after all.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Admission {
  readonly reconcile: (usage: Estimate) => Effect.Effect<void>
  readonly cancel: Effect.Effect<void>
}

/**
 * The state of one key, for observability.
 *
 * @since 0.1.0
 * @category Models
 */
export interface KeySnapshot {
  readonly key: string
  /** The limits in force (lower than configured once the provider has said so). */
  readonly quota: Quota
  readonly queued: number
  readonly inFlight: number
  /** Concurrency permits free now (at most `quota.maxConcurrent`). */
  readonly permitsFree: number
  /** What each bucket (`rpm`, `tpm`, `itpm`, `otpm`) holds now: reservations and refills both show here. */
  readonly available: Readonly<Record<string, number>>
  /** Until when (epoch milliseconds) a provider 429 closed the gate, when it is closed. */
  readonly pausedUntil: number | undefined
}

// =============================================================================
// Service
// =============================================================================

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /**
   * Waits for a permit and for the budgets, in arrival order; the permit is held for the scope. A span
   * `ProviderRateLimiter.admit` covers the wait (when a tracer is installed).
   */
  readonly admit: (
    target: Target,
    estimate: Estimate,
    options?: AdmitOptions
  ) => Effect.Effect<Admission, Errors.RateLimitError | Errors.QuotaExhaustedError, Scope.Scope>
  /**
   * `admit` without a scope: waits the same way, runs `use` with the admission and releases the permit when `use`
   * ends, however it ends. A queued caller then holds nothing but its fiber and a few hundred bytes (a scope, and
   * the context it is provided in, are about 4.6 KB more); the engine calls the limiter this way.
   */
  readonly withAdmission: <A, E, R>(
    target: Target,
    estimate: Estimate,
    use: (admission: Admission) => Effect.Effect<A, E, R>,
    options?: AdmitOptions
  ) => Effect.Effect<A, E | Errors.RateLimitError | Errors.QuotaExhaustedError, R>
  /**
   * A provider 429: closes the key's gate for every caller for `millis`, and (adaptive) lowers the limit it
   * reached, `limit` when the provider named it (`RateLimitError.limit`), else every limit.
   */
  readonly pause: (target: Target, millis: number, limit?: Errors.RateLimitKind) => Effect.Effect<void>
  /** Rate-limit headers of a response: lower the local budget when the provider reports less left. */
  readonly observe: (target: Target, headers: Wire.Headers) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<ReadonlyArray<KeySnapshot>>
  /**
   * How long a request arriving now would wait to be admitted, in milliseconds (an estimate: behind the waiters
   * queued, for the budgets and a permit, past a 429's pause): the engine sends a call to the deployment of its
   * model that would admit it soonest.
   */
  readonly expectedWait: (target: Target, estimate: Estimate, lane?: Lane) => Effect.Effect<number>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class ProviderRateLimiter
  extends Context.Tag("plot-engine/ProviderRateLimiter")<ProviderRateLimiter, Service>()
{}

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options {
  /** Quotas per provider (default `defaultQuotas`): every key of the provider gets its provider's. */
  readonly quotas?: Partial<Record<Domain.ProviderName, Quota>> | undefined
  /**
   * One budget per provider and model (the default: both providers enforce their quotas per model), or one per
   * provider.
   */
  readonly keyBy?: "provider" | "model" | undefined
  /**
   * Models that share one quota, as some providers pool them (OpenAI's model families; Anthropic's limits per model
   * class): each group's models are admitted under one key, `provider/name`. Only with `keyBy: "model"`.
   */
  readonly groups?: ReadonlyArray<Group> | undefined
  /** Quotas of particular keys (`openai/gpt-5`, or a group's `provider/name`), over their provider's. */
  readonly keyQuotas?: Readonly<Record<string, Quota>> | undefined
  /**
   * The share of each key's concurrency permits kept for interactive requests (default 0.2: one of the default 5;
   * at least one when a key has several, none when 0): batch requests never hold those.
   */
  readonly interactiveShare?: number | undefined
  /** How long a request may wait for admission (default 5 minutes). */
  readonly queueTimeout?: Duration.DurationInput | undefined
  /**
   * Learn lower limits from the provider: its limit headers and its 429s (default `true`). Off, only the
   * remaining-budget headers and the 429 pause apply.
   */
  readonly adaptive?: boolean | undefined
  /** Prefixes the store's keys, so that several engines can share one Redis (default `plot-engine:`). */
  readonly prefix?: string | undefined
  /**
   * With a remote store (Redis): the longest a store call may take (default 1 second). Past it, or when the store
   * fails, buckets in this process answer instead until the store answers again (asked again after five times
   * this, at least a second).
   */
  readonly storeTimeout?: Duration.DurationInput | undefined
  /**
   * With a remote store: the share of each limit this instance allows itself while the store is away (default 1;
   * `1 / N` for N instances sharing the quota).
   */
  readonly localShare?: number | undefined
}

/**
 * Models of one provider that share a quota.
 *
 * @since 0.1.0
 * @category Options
 */
export interface Group {
  readonly provider: Domain.ProviderName
  /** The group's key is `provider/name`. */
  readonly name: string
  readonly models: ReadonlyArray<string>
}

/**
 * The deployment a request goes to: its own, else the provider's (named after the provider).
 *
 * @since 0.1.0
 * @category Keys
 */
export const deploymentOf = (target: Target): string => target.deployment ?? target.provider

/**
 * The key a request is admitted under: `provider/model`, its group's `provider/name`, or with `keyBy:
 * "provider"` the provider alone; on a deployment of its own (see `Deployments`), the deployment's id in place of
 * the provider (`openai-second-org/gpt-4.1`).
 *
 * @example
 * ```ts
 * import { ProviderRateLimiter } from "plot-engine"
 *
 * const options = { groups: [{ provider: "openai" as const, name: "gpt-4.1", models: ["gpt-4.1", "gpt-4.1-mini"] }] }
 * ProviderRateLimiter.keyOf(options, { provider: "openai", model: "gpt-4.1-mini" }) // "openai/gpt-4.1"
 * ProviderRateLimiter.keyOf(options, { provider: "openai", model: "gpt-5" }) // "openai/gpt-5"
 * ```
 *
 * @since 0.1.0
 * @category Keys
 */
export const keyOf = (options: Pick<Options, "keyBy" | "groups">, target: Target): string => {
  const deployment = deploymentOf(target)
  if (options.keyBy === "provider") return deployment
  const group = options.groups?.find((g) => g.provider === target.provider && g.models.includes(target.model))
  return `${deployment}/${group === undefined ? target.model : group.name}`
}

const window = Duration.minutes(1)

/**
 * Requests waiting for admission, tagged `key`.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const queueDepth = Metrics.fromKey(MetricKey.gauge("plot_engine_limiter_queue_depth", {
  description: "Requests waiting for admission"
}))

/**
 * How long admissions waited, in milliseconds, tagged `key`.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const waitTime = Metrics.fromKey(MetricKey.histogram(
  "plot_engine_limiter_wait_ms",
  MetricBoundaries.exponential({ start: 10, factor: 4, count: 10 }),
  "How long admissions waited for the rate limiter"
))

/**
 * Store calls answered by this process's own buckets because the store (Redis) failed or was silent.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const storeUnavailable = Metric.counter("plot_engine_limiter_store_unavailable_total", {
  description: "Rate limiter store calls answered locally because the store failed or did not answer in time",
  incremental: true
})

/**
 * Builds the limiter over the `RateLimiter` in context (its store in memory, or Redis).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Service, never, RateLimiter.RateLimiter | Scope.Scope> =>
  Effect.gen(function*() {
    const limiter = yield* RateLimiter.RateLimiter
    const clock = yield* Effect.clock
    const storeTimeoutMillis = Duration.toMillis(options.storeTimeout ?? "1 second")
    yield* TokenBuckets.warmUp(limiter, `${options.prefix ?? "plot-engine:"}store-check`, window, storeTimeoutMillis)
    const { hear, service, shared } = yield* makeWith(
      TokenBuckets.make(limiter, window, clock, {
        timeoutMillis: storeTimeoutMillis,
        localShare: options.localShare ?? 1,
        retryAfterMillis: Math.max(1_000, 5 * storeTimeoutMillis),
        unavailable: storeUnavailable
      }),
      options
    )
    // With `QuotaSignals`, the other instances over the store hear this one's 429s, and it theirs.
    const signals = yield* Effect.serviceOption(QuotaSignals.QuotaSignals)
    if (Option.isSome(signals)) shared.tell = (yield* signals.value.join(hear)).tell
    return service
  })

/**
 * Builds the limiter with its buckets in this process's memory: a reservation across every bucket is one
 * synchronous step.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const makeMemory = (options: Options = {}): Effect.Effect<Service> =>
  Effect.flatMap(
    Effect.clock,
    (clock) => Effect.map(makeWith(TokenBuckets.memory(clock, window), options), ({ service }) => service)
  )

/**
 * A quota as given, checked: the concurrency 5 when it has none (a quota built from JSON may lack it; the type does
 * not let TypeScript omit it), every limit a number above 0 (a limit of 0 or none admits nothing, silently). A quota
 * that cannot be kept is a defect when the limiter is built, naming it.
 */
const checkedQuota = (name: string, quota: Quota): Quota => {
  const checked = { ...quota, maxConcurrent: quota.maxConcurrent ?? 5 }
  const wrong = (field: keyof Quota, value: unknown, whole: boolean) => {
    if (value === undefined && field !== "requestsPerMinute") return
    if (typeof value === "number" && value > 0 && (!whole || Number.isInteger(value))) return
    throw new Error(
      `ProviderRateLimiter: ${name}.${field} must be ${whole ? "a whole number of at least 1" : "above 0"} (got ${
        JSON.stringify(value)
      })`
    )
  }
  wrong("requestsPerMinute", checked.requestsPerMinute, false)
  wrong("tokensPerMinute", checked.tokensPerMinute, false)
  wrong("inputTokensPerMinute", checked.inputTokensPerMinute, false)
  wrong("outputTokensPerMinute", checked.outputTokensPerMinute, false)
  wrong("maxConcurrent", checked.maxConcurrent, true)
  return checked
}

/** An admission whose reconciliation also teaches the key how the provider counts prompts. */
const learningInput = (
  state: LimiterKeys.KeyState,
  estimate: Estimate,
  { admission, release }: LimiterKeys.Admitted
): LimiterKeys.Admitted => ({
  admission: {
    reconcile: (usage) =>
      Effect.suspend(() => {
        LimiterLearning.learnInputScale(state, estimate.inputTokens, usage.inputTokens)
        return admission.reconcile(usage)
      }),
    cancel: admission.cancel
  },
  release
})

/** How many keys a limiter keeps before it forgets the idle ones (see `LimiterKeys.forgettable`). */
const keySweepThreshold = 1_024

const makeWith = Effect.fnUntraced(function*(buckets: TokenBuckets.TokenBuckets, options: Options) {
  const shared: LimiterKeys.Shared = {
    buckets,
    interactiveShare: Math.min(1, Math.max(0, options.interactiveShare ?? 0.2)),
    prefix: options.prefix ?? "plot-engine:",
    queueTimeoutMillis: Duration.toMillis(options.queueTimeout ?? "5 minutes"),
    adaptive: options.adaptive ?? true,
    keyLabel: Metrics.boundedLabel(256, [
      ...ModelCatalog.defaultCatalog.map((model) => keyOf(options, { provider: model.provider, model: model.id })),
      ...Object.keys(options.keyQuotas ?? {})
    ]),
    queueDepth,
    waitTime,
    clock: yield* Effect.clock,
    runDaemon: Runtime.runFork(yield* Effect.runtime<never>()),
    tell: () => {}
  }
  const quotas = Object.fromEntries(
    Object.entries({ ...defaultQuotas, ...options.quotas }).map(([provider, quota]) => [
      provider,
      checkedQuota(`quotas.${provider}`, quota)
    ])
  ) as Record<Domain.ProviderName, Quota>
  const keyQuotas = options.keyQuotas === undefined ? undefined : Object.fromEntries(
    Object.entries(options.keyQuotas).map(([key, quota]) => [key, checkedQuota(`keyQuotas.${key}`, quota)])
  )
  const states = new Map<string, LimiterKeys.KeyState>()
  const sweepStates = Sweep.make(states, keySweepThreshold)

  // Signals for keys this instance has not used yet, kept until it does (the latest per key; a bounded map).
  const heardEarly = new Map<string, { readonly signal: QuotaSignals.Signal; readonly at: number }>()
  // Synchronous, so that two callers arriving together for a new key find one state.
  const stateNow = (target: Target): LimiterKeys.KeyState => {
    const key = keyOf(options, target)
    const now = shared.clock.unsafeCurrentTimeMillis()
    const existing = states.get(key)
    if (existing !== undefined) {
      existing.lookedUpAt = now
      return existing
    }
    sweepStates((state) => LimiterKeys.forgettable(shared, state, now))
    const state = LimiterKeys.makeKeyState(shared, key, keyQuotas?.[key] ?? quotas[target.provider])
    state.lookedUpAt = now
    states.set(key, state)
    // What the others learnt of this key before this instance used it: what is left of the pause, the cut limits.
    const early = heardEarly.get(key)
    if (early !== undefined) {
      heardEarly.delete(key)
      const since = now - early.at
      LimiterKeys.hear(shared, state, {
        ...early.signal,
        pausedForMillis: Math.max(0, early.signal.pausedForMillis - since)
      })
    }
    return state
  }
  const stateOf = (target: Target): Effect.Effect<LimiterKeys.KeyState> => Effect.sync(() => stateNow(target))

  // Uninterruptible but for its waits (see `LimiterKeys.admitTo`); `then` once admitted, outside the span (which
  // covers the wait). Without a tracer, `then` is passed in, so that a queued caller holds no frame of it.
  const admitThen = <A, E, R>(
    target: Target,
    estimate: Estimate,
    admitOptions: AdmitOptions | undefined,
    restore: LimiterKeys.Restore,
    then: LimiterKeys.Then<A, E, R>
  ): Effect.Effect<A, E | Errors.RateLimitError | Errors.QuotaExhaustedError, R> => {
    if (!shared.adaptive) return admitOn(() => stateNow(target), target, estimate, admitOptions, restore, then)
    // Adaptive: the estimate scaled by how the provider has counted prompts, and its reconciliation learning that.
    return Effect.suspend(() => {
      const state = stateNow(target)
      return admitOn(
        () => state,
        target,
        LimiterLearning.inputScaled(state, estimate),
        admitOptions,
        restore,
        (admitted) => then(learningInput(state, estimate, admitted))
      )
    })
  }
  const admitOn = <A, E, R>(
    state: () => LimiterKeys.KeyState,
    target: Target,
    estimate: Estimate,
    admitOptions: AdmitOptions | undefined,
    restore: LimiterKeys.Restore,
    then: LimiterKeys.Then<A, E, R>
  ) =>
    Tracing.ifTraced(
      () =>
        Effect.flatMap(
          LimiterKeys.admitTo(shared, state, target, estimate, admitOptions, restore, Effect.succeed)
            .pipe(Effect.withSpan("ProviderRateLimiter.admit", { captureStackTrace: false })),
          then
        ),
      () => LimiterKeys.admitTo(shared, state, target, estimate, admitOptions, restore, then)
    )

  const service = ProviderRateLimiter.of({
    // Not `acquireRelease`: its finalizer diffs every FiberRef of the fiber on the way in and out.
    admit: (target, estimate, admitOptions) =>
      Effect.flatMap(Scope.Scope, (scope) =>
        Effect.uninterruptibleMask((restore) =>
          admitThen(
            target,
            estimate,
            admitOptions,
            restore,
            ({ admission, release }) => Effect.as(Scope.addFinalizer(scope, release), admission)
          )
        )),
    // `use`, then the release, however `use` ends: `Effect.ensuring` would mask again inside this mask.
    withAdmission: (target, estimate, use, admitOptions) =>
      Effect.uninterruptibleMask((restore) =>
        admitThen(
          target,
          estimate,
          admitOptions,
          restore,
          ({ admission, release }) =>
            Effect.matchCauseEffect(
              restore(use(admission)),
              LimiterKeys.handlers(
                (cause) => Effect.zipRight(release, Effect.failCause(cause)),
                (value) => Effect.as(release, value)
              )
            )
        )
      ),
    pause: (target, millis, limit) =>
      Effect.flatMap(stateOf(target), (state) => LimiterKeys.pauseKey(shared, state, millis, limit)),
    observe: (target, headers) =>
      Effect.flatMap(stateOf(target), (state) => LimiterKeys.observeOn(shared, state, headers)),
    snapshot: Effect.suspend(() =>
      Effect.forEach([...states.values()], (state) => LimiterKeys.snapshotOf(shared, state))
    ),
    expectedWait: (target, estimate, lane) =>
      Effect.map(stateOf(target), (state) =>
        LimiterKeys.waitForArrival(
          shared,
          state,
          shared.adaptive ? LimiterLearning.inputScaled(state, estimate) : estimate,
          lane ?? "interactive"
        ))
  })
  const hear = (signal: QuotaSignals.Signal) => {
    const state = states.get(signal.key)
    if (state !== undefined) return LimiterKeys.hear(shared, state, signal)
    if (heardEarly.size >= 10_000) heardEarly.clear()
    const earlier = heardEarly.get(signal.key)?.signal
    // A later pause without a cut keeps the limits an earlier one cut.
    heardEarly.set(signal.key, {
      signal: { ...signal, limits: signal.limits ?? earlier?.limits },
      at: shared.clock.unsafeCurrentTimeMillis()
    })
  }
  return { service, shared, hear }
})

// =============================================================================
// Layers
// =============================================================================

const unlimited: Admission = { reconcile: () => Effect.void, cancel: Effect.void }

/**
 * No local limit: every request is admitted at once, and the provider's 429s are only retried. For tests in
 * virtual time, and for hosts that limit rate elsewhere; choosing it is explicit, so that forgetting a limiter
 * is a type error rather than an unthrottled engine.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerUnlimited: Layer.Layer<ProviderRateLimiter> = Layer.succeed(
  ProviderRateLimiter,
  ProviderRateLimiter.of({
    admit: () => Effect.succeed(unlimited),
    withAdmission: (_target, _estimate, use) => use(unlimited),
    pause: () => Effect.void,
    observe: () => Effect.void,
    snapshot: Effect.succeed([]),
    expectedWait: () => Effect.succeed(0)
  })
)

/**
 * The limiter with an in-memory store (one process).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerMemory = (options: Options = {}): Layer.Layer<ProviderRateLimiter> =>
  Layer.effect(ProviderRateLimiter, makeMemory(options))

/**
 * The limiter over the `RateLimiterStore` in context: `plot-engine/ProviderRateLimiter/Redis` provides one over
 * Redis, so that the instances of a backend share one provider quota. With a `QuotaSignals` in context too (that
 * entry point provides one over Redis pub/sub), a provider 429's pause and the limits it cut reach every instance.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerStore = (
  options: Options = {}
): Layer.Layer<ProviderRateLimiter, never, RateLimiter.RateLimiterStore> =>
  Layer.scoped(ProviderRateLimiter, make(options)).pipe(Layer.provide(RateLimiter.layer))

const quotaConfig = (provider: "OPENAI" | "ANTHROPIC", defaults: Quota): Config.Config<Quota> => {
  const optionalInt = (name: string, fallback: number | undefined) =>
    Config.option(ConfigValues.integerAtLeast(`PLOT_ENGINE_${provider}_${name}`)).pipe(
      Config.map((value) => Option.getOrElse(value, () => fallback))
    )
  return Config.all({
    requestsPerMinute: ConfigValues.integerAtLeast(`PLOT_ENGINE_${provider}_RPM`).pipe(
      Config.withDefault(defaults.requestsPerMinute)
    ),
    tokensPerMinute: optionalInt("TPM", defaults.tokensPerMinute),
    inputTokensPerMinute: optionalInt("ITPM", defaults.inputTokensPerMinute),
    outputTokensPerMinute: optionalInt("OTPM", defaults.outputTokensPerMinute),
    maxConcurrent: ConfigValues.integerAtLeast(`PLOT_ENGINE_${provider}_MAX_CONCURRENT`).pipe(
      Config.withDefault(defaults.maxConcurrent)
    )
  })
}

/**
 * Quotas from the environment: `PLOT_ENGINE_OPENAI_RPM`, `PLOT_ENGINE_OPENAI_TPM`, `PLOT_ENGINE_ANTHROPIC_RPM`,
 * `PLOT_ENGINE_ANTHROPIC_ITPM`, `PLOT_ENGINE_ANTHROPIC_OTPM`, `PLOT_ENGINE_<PROVIDER>_MAX_CONCURRENT`.
 *
 * @since 0.1.0
 * @category Configuration
 */
export const quotasConfig: Config.Config<Record<Domain.ProviderName, Quota>> = Config.all({
  openai: quotaConfig("OPENAI", defaultQuotas.openai),
  anthropic: quotaConfig("ANTHROPIC", defaultQuotas.anthropic)
})

const isRedisUrl = (url: string) => {
  try {
    return ["redis:", "rediss:"].includes(new URL(url).protocol)
  } catch {
    return false
  }
}

/**
 * The limiter with its quotas from the environment (see `quotasConfig`) and its queue timeout from
 * `PLOT_ENGINE_QUEUE_TIMEOUT` (a duration; `options.queueTimeout` wins over it): in memory, or, with
 * `PLOT_ENGINE_REDIS_URL` (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS), over Redis, the quota
 * shared by every instance with the same prefix, each allowing itself `PLOT_ENGINE_REDIS_LOCAL_SHARE` of it (default
 * 1) while Redis is away or slower than `PLOT_ENGINE_REDIS_TIMEOUT` (a duration, default 1 second).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig = (options: Omit<Options, "quotas"> = {}) =>
  Layer.unwrapEffect(
    Effect.flatMap(
      Config.all({
        quotas: quotasConfig,
        queueTimeout: Config.option(ConfigValues.duration("PLOT_ENGINE_QUEUE_TIMEOUT", "allowed")),
        redisUrl: Config.option(
          // Read as a string and then redacted: validated redacted, its error lost the variable's name.
          Config.string("PLOT_ENGINE_REDIS_URL").pipe(
            Config.validate({ message: "Expected a redis:// or rediss:// URL", validation: isRedisUrl }),
            Config.map(Redacted.make)
          )
        ),
        localShare: Config.option(ConfigValues.share("PLOT_ENGINE_REDIS_LOCAL_SHARE")),
        storeTimeout: Config.option(ConfigValues.duration("PLOT_ENGINE_REDIS_TIMEOUT", "refused"))
      }),
      ({ localShare, queueTimeout, quotas, redisUrl, storeTimeout }) => {
        const configured = {
          queueTimeout: Option.getOrUndefined(queueTimeout),
          localShare: Option.getOrUndefined(localShare),
          storeTimeout: Option.getOrUndefined(storeTimeout),
          ...options,
          quotas
        }
        if (Option.isNone(redisUrl)) return Effect.succeed(layerMemory(configured))
        // Loaded only when asked for: importing the engine does not load `ioredis`.
        return Effect.map(
          Effect.tryPromise({
            try: () => import("./ProviderRateLimiter/Redis.js"),
            catch: (cause) =>
              new Error(`PLOT_ENGINE_REDIS_URL is set, but the Redis limiter cannot load (is ioredis installed?)`, {
                cause
              })
          }).pipe(Effect.orDie),
          (Redis) => Redis.layer({ ...configured, redis: Redis.redisOptionsOf(redisUrl.value) })
        )
      }
    )
  )
