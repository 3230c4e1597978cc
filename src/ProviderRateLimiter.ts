/**
 * The Semaphore-plus-RateLimiter layer: per key (a provider, or a provider's model), a `Semaphore`
 * for concurrent requests and `@effect/experimental` `RateLimiter` token buckets for requests per minute and
 * tokens per minute (OpenAI style: prompt plus max output, counted at admission) or input and output tokens per
 * minute (Anthropic style).
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
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as SynchronizedRef from "effect/SynchronizedRef"
import type * as Domain from "./Domain.js"
import * as Errors from "./Errors.js"
import * as Metrics from "./internal/metrics.js"
import * as TokenBuckets from "./internal/tokenBuckets.js"
import * as Wire from "./internal/wire.js"

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
}

/**
 * How long a caller will wait to be admitted.
 *
 * @since 0.1.0
 * @category Models
 */
export interface AdmitOptions {
  /**
   * The caller's own deadline (epoch milliseconds). When it comes before the queue timeout, a wait that cannot
   * end by then fails with a `TimeoutError`: at once when the wait is known (the budgets, a closed gate), at the
   * deadline when queued for a permit.
   */
  readonly until?: number | undefined
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
   * `ProviderRateLimiter.admit` covers the wait.
   */
  readonly admit: (
    target: Target,
    estimate: Estimate,
    options?: AdmitOptions
  ) => Effect.Effect<Admission, Errors.RateLimitError | Errors.QuotaExhaustedError | Errors.TimeoutError, Scope.Scope>
  /** A provider 429: closes the key's gate for every caller for `millis` (and, adaptive, lowers the limits). */
  readonly pause: (target: Target, millis: number) => Effect.Effect<void>
  /** Rate-limit headers of a response: lower the local budget when the provider reports less left. */
  readonly observe: (target: Target, headers: Wire.Headers) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<ReadonlyArray<KeySnapshot>>
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
  /** Quotas per provider (default `defaultQuotas`). */
  readonly quotas?: Partial<Record<Domain.ProviderName, Quota>> | undefined
  /** One budget per provider (default) or per provider and model. */
  readonly keyBy?: "provider" | "model" | undefined
  /** How long a request may wait for admission (default 5 minutes). */
  readonly queueTimeout?: Duration.DurationInput | undefined
  /**
   * Learn lower limits from the provider: its limit headers and its 429s (default `true`). Off, only the
   * remaining-budget headers and the 429 pause apply.
   */
  readonly adaptive?: boolean | undefined
  /** Prefixes the store's keys, so that several engines can share one Redis (default `plot-engine:`). */
  readonly prefix?: string | undefined
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

/** The state of one key: its permits, what waits and runs, the limits in force and the gate a 429 closed. */
interface KeyState {
  readonly key: string
  readonly semaphore: Effect.Semaphore
  /** Makes each reservation across the buckets one step, so that reservations keep arrival order. */
  readonly reserving: Effect.Semaphore
  quota: Quota
  /** The semaphore's size, and how many of its permits are taken (waiting for budget or in flight). */
  readonly permits: number
  permitsHeld: number
  queued: number
  inFlight: number
  pausedUntil: number
}

/** What every key of one limiter shares. */
interface Shared {
  readonly buckets: TokenBuckets.TokenBuckets
  readonly prefix: string
  readonly queueTimeoutMillis: number
  readonly adaptive: boolean
}

/** The buckets a quota has, each with its limit and the share of an estimate it takes. */
const bucketsOf = (quota: Quota, estimate: Estimate) => {
  const buckets: Array<{ readonly name: string; readonly limit: number; readonly tokens: number }> = [
    { name: "rpm", limit: quota.requestsPerMinute, tokens: 1 }
  ]
  if (quota.tokensPerMinute !== undefined) {
    buckets.push({ name: "tpm", limit: quota.tokensPerMinute, tokens: estimate.inputTokens + estimate.outputTokens })
  }
  if (quota.inputTokensPerMinute !== undefined) {
    buckets.push({ name: "itpm", limit: quota.inputTokensPerMinute, tokens: estimate.inputTokens })
  }
  if (quota.outputTokensPerMinute !== undefined) {
    buckets.push({ name: "otpm", limit: quota.outputTokensPerMinute, tokens: estimate.outputTokens })
  }
  return buckets
}

const nothing: Estimate = { inputTokens: 0, outputTokens: 0 }

/** The store key of one bucket of a key. */
const bucketKey = (shared: Shared, state: KeyState, bucket: string) => `${shared.prefix}${state.key}:${bucket}`

const giveBack = (shared: Shared, state: KeyState, estimate: Estimate) =>
  Effect.forEach(
    bucketsOf(state.quota, estimate),
    (b) => shared.buckets.refund(bucketKey(shared, state, b.name), b.limit, b.tokens),
    { discard: true }
  )

/**
 * Builds the limiter over the `RateLimiter` in context (memory or Redis store).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const shared: Shared = {
    buckets: TokenBuckets.make(yield* RateLimiter.RateLimiter, window),
    prefix: options.prefix ?? "plot-engine:",
    queueTimeoutMillis: Duration.toMillis(options.queueTimeout ?? "5 minutes"),
    adaptive: options.adaptive ?? true
  }
  const quotas = { ...defaultQuotas, ...options.quotas }
  const states = yield* SynchronizedRef.make(new Map<string, KeyState>())

  const stateOf = (target: Target) =>
    SynchronizedRef.modifyEffect(states, (map) => {
      const key = options.keyBy === "model" ? `${target.provider}/${target.model}` : target.provider
      const existing = map.get(key)
      if (existing !== undefined) return Effect.succeed([existing, map] as const)
      const quota = quotas[target.provider]
      return Effect.map(
        Effect.all([Effect.makeSemaphore(quota.maxConcurrent), Effect.makeSemaphore(1)]),
        ([semaphore, reserving]) => {
          const state: KeyState = {
            key,
            semaphore,
            reserving,
            quota,
            permits: quota.maxConcurrent,
            permitsHeld: 0,
            queued: 0,
            inFlight: 0,
            pausedUntil: 0
          }
          return [state, new Map(map).set(key, state)] as const
        }
      )
    })

  return ProviderRateLimiter.of({
    admit: (target, estimate, admitOptions) =>
      Effect.flatMap(stateOf(target), (state) => admitTo(shared, state, target, estimate, admitOptions)).pipe(
        Effect.withSpan("ProviderRateLimiter.admit", { captureStackTrace: false })
      ),
    pause: (target, millis) => Effect.flatMap(stateOf(target), (state) => pauseKey(shared, state, millis)),
    observe: (target, headers) => Effect.flatMap(stateOf(target), (state) => observeOn(shared, state, headers)),
    snapshot: Effect.flatMap(
      SynchronizedRef.get(states),
      (map) => Effect.forEach(map.values(), (state) => snapshotOf(shared, state))
    )
  })
})

/** Admits a request to a key: its place in the queue, the wait, and the admission that settles it. */
const admitTo = (
  shared: Shared,
  state: KeyState,
  target: Target,
  estimate: Estimate,
  options: AdmitOptions | undefined
): Effect.Effect<Admission, Errors.RateLimitError | Errors.QuotaExhaustedError | Errors.TimeoutError, Scope.Scope> =>
  Effect.gen(function*() {
    const tooLarge = bucketsOf(state.quota, estimate).find((b) => b.tokens > b.limit)
    if (tooLarge !== undefined) {
      return yield* new Errors.QuotaExhaustedError({
        provider: target.provider,
        model: target.model,
        reason: "request_too_large",
        detail:
          `the request needs ${tooLarge.tokens} of a ${tooLarge.name} budget of ${tooLarge.limit}: it can never be admitted`
      })
    }
    const queuedAt = yield* Clock.currentTimeMillis
    const queueDeadline = queuedAt + shared.queueTimeoutMillis
    const until = options?.until
    const callerFirst = until !== undefined && until < queueDeadline
    const timedOut = callerFirst
      ? new Errors.TimeoutError({
        provider: target.provider,
        model: target.model,
        detail: "the caller's deadline came before a permit and budget"
      })
      : new Errors.RateLimitError({
        provider: target.provider,
        model: target.model,
        local: true,
        shouldRetry: false,
        detail: `waited longer than the queue timeout of ${Duration.format(Duration.millis(shared.queueTimeoutMillis))}`
      })
    const depth = Metrics.tagged(queueDepth, { key: state.key })
    state.queued++
    yield* Metric.incrementBy(depth, 1)
    yield* waitFor(shared, state, estimate, callerFirst ? until : queueDeadline, timedOut).pipe(
      Effect.ensuring(Effect.zipRight(Effect.sync(() => state.queued--), Metric.incrementBy(depth, -1)))
    )
    yield* Metric.update(Metrics.tagged(waitTime, { key: state.key }), (yield* Clock.currentTimeMillis) - queuedAt)
    yield* Effect.acquireRelease(Effect.sync(() => state.inFlight++), () => Effect.sync(() => state.inFlight--))
    return { reconcile: reconcileWith(shared, state, estimate), cancel: giveBack(shared, state, estimate) }
  })

/**
 * The wait of one request, in three steps: a concurrency permit (held until the admission's scope closes), the
 * gate a provider 429 closed, then one reservation across every bucket and the sleep it implies. Fails with
 * `timedOut` when the wait cannot end by `deadline`, giving back what it reserved.
 */
const waitFor = (
  shared: Shared,
  state: KeyState,
  reserved: Estimate,
  deadline: number,
  timedOut: Errors.RateLimitError | Errors.TimeoutError
): Effect.Effect<void, Errors.RateLimitError | Errors.TimeoutError, Scope.Scope> =>
  Effect.gen(function*() {
    // 1. A permit, in arrival order. Only a waiter that has to queue for it gets a timer (checked and taken
    // without yielding, so nobody slips in between). The wait stays interruptible (a timeout or the caller may
    // end it); once taken, its release is registered before anything can interrupt.
    const permit = Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(restore(state.semaphore.take(1)), Effect.sync(() => state.permitsHeld++)).pipe(
        Effect.zipRight(
          Effect.addFinalizer(() => Effect.zipRight(Effect.sync(() => state.permitsHeld--), state.semaphore.release(1)))
        )
      )
    )
    yield* state.permitsHeld < state.permits ? permit : permit.pipe(
      Effect.timeoutFail({
        duration: Math.max(0, deadline - (yield* Clock.currentTimeMillis)),
        onTimeout: () => timedOut
      })
    )
    // 2. In arrival order (the lock is fair): the gate a provider 429 closed, for everybody (re-read on waking:
    // a later 429 may extend it), then one reservation across every bucket.
    const delay = yield* state.reserving.withPermits(1)(Effect.gen(function*() {
      for (let now = yield* Clock.currentTimeMillis; now < state.pausedUntil; now = yield* Clock.currentTimeMillis) {
        if (state.pausedUntil > deadline) return yield* timedOut
        yield* Effect.sleep(state.pausedUntil - now)
      }
      const results = yield* Effect.forEach(
        bucketsOf(state.quota, reserved),
        (b) => shared.buckets.take(bucketKey(shared, state, b.name), b.limit, b.tokens)
      )
      return Math.max(0, ...results.map((result) => result.delay))
    }))
    if ((yield* Clock.currentTimeMillis) + delay > deadline) {
      yield* giveBack(shared, state, reserved)
      return yield* timedOut
    }
    // 3. The wait the reservation implies.
    yield* Effect.sleep(delay).pipe(Effect.onInterrupt(() => giveBack(shared, state, reserved)))
  })

/**
 * Replaces a reservation with what the provider reported: what was not used goes back, what went over is
 * charged. OpenAI keeps the max output it counted at admission, so its tokens bucket reconciles the prompt only;
 * Anthropic corrects its output bucket to what was written.
 */
const reconcileWith =
  (shared: Shared, state: KeyState, reserved: Estimate) => (usage: Estimate): Effect.Effect<void> => {
    const wanted = bucketsOf(state.quota, reserved)
    return Effect.forEach(
      bucketsOf(state.quota, usage),
      (b, i) => {
        const used = b.name === "tpm" ? usage.inputTokens + reserved.outputTokens : b.tokens
        const held = wanted[i]!.tokens
        const key = bucketKey(shared, state, b.name)
        return used > held
          ? Effect.asVoid(shared.buckets.take(key, b.limit, used - held))
          : used < held
          ? shared.buckets.refund(key, b.limit, held - used)
          : Effect.void
      },
      { discard: true }
    )
  }

/**
 * A provider 429: the key's gate closes for every caller until `millis` from now. With `adaptive`, the limits
 * (and what the buckets hold) come down by a tenth, once per episode: the refusals of calls already in flight
 * when the first came are the same episode.
 */
const pauseKey = (shared: Shared, state: KeyState, millis: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    const alreadyPaused = state.pausedUntil > now
    state.pausedUntil = Math.max(state.pausedUntil, now + millis)
    if (!shared.adaptive || alreadyPaused) return
    // The provider refused while the local budget allowed: the limits in force are too high.
    const lower = (n: number | undefined) => (n === undefined ? undefined : Math.max(1, Math.floor(n * 0.9)))
    state.quota = {
      ...state.quota,
      requestsPerMinute: lower(state.quota.requestsPerMinute)!,
      tokensPerMinute: lower(state.quota.tokensPerMinute),
      inputTokensPerMinute: lower(state.quota.inputTokensPerMinute),
      outputTokensPerMinute: lower(state.quota.outputTokensPerMinute)
    }
    for (const b of bucketsOf(state.quota, nothing)) {
      yield* shared.buckets.lowerTo(bucketKey(shared, state, b.name), b.limit, b.limit)
    }
  })

/**
 * A response's rate-limit headers: with `adaptive`, a limit the provider reports below the one in force lowers
 * it; a bucket never holds more than the provider says is left, nor than its limit.
 */
const observeOn = (shared: Shared, state: KeyState, headers: Wire.Headers): Effect.Effect<void> =>
  Effect.gen(function*() {
    const reported = Wire.rateLimitReport(headers)
    for (const [bucket, report] of Object.entries(reported) as Array<[string, Wire.BucketReport]>) {
      const field = quotaField[bucket]
      if (field === undefined) continue
      const configured = state.quota[field]
      if (configured === undefined) continue
      const lowered = shared.adaptive && report.limit !== undefined && report.limit < configured
      if (lowered) state.quota = { ...state.quota, [field]: report.limit }
      // Each look at a bucket is a store call (a round trip with Redis): only when something may come down.
      if (!lowered && report.remaining === undefined) continue
      const limit = state.quota[field]!
      yield* shared.buckets.lowerTo(bucketKey(shared, state, bucket), limit, report.remaining ?? limit)
    }
  })

const snapshotOf = (shared: Shared, state: KeyState): Effect.Effect<KeySnapshot> =>
  Effect.map(
    Effect.forEach(
      bucketsOf(state.quota, nothing),
      (b) =>
        Effect.map(
          shared.buckets.level(bucketKey(shared, state, b.name), b.limit),
          (remaining) => [b.name, remaining] as const
        )
    ),
    (available) => ({
      key: state.key,
      quota: state.quota,
      queued: state.queued,
      inFlight: state.inFlight,
      permitsFree: state.permits - state.permitsHeld,
      available: Object.fromEntries(available),
      pausedUntil: state.pausedUntil > 0 ? state.pausedUntil : undefined
    })
  )

const quotaField: Readonly<
  Record<string, "requestsPerMinute" | "tokensPerMinute" | "inputTokensPerMinute" | "outputTokensPerMinute">
> = {
  rpm: "requestsPerMinute",
  tpm: "tokensPerMinute",
  itpm: "inputTokensPerMinute",
  otpm: "outputTokensPerMinute"
}

// =============================================================================
// Layers
// =============================================================================

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
    admit: () => Effect.succeed({ reconcile: () => Effect.void, cancel: Effect.void }),
    pause: () => Effect.void,
    observe: () => Effect.void,
    snapshot: Effect.succeed([])
  })
)

/**
 * The limiter with an in-memory store (one process).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerMemory = (options: Options = {}): Layer.Layer<ProviderRateLimiter> =>
  Layer.effect(ProviderRateLimiter, make(options)).pipe(
    Layer.provide(RateLimiter.layer),
    Layer.provide(RateLimiter.layerStoreMemory)
  )

/**
 * The limiter over the `RateLimiterStore` in context: `plot-engine/ProviderRateLimiter/Redis` provides one over
 * Redis, so that the instances of a backend share one provider quota.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerStore = (
  options: Options = {}
): Layer.Layer<ProviderRateLimiter, never, RateLimiter.RateLimiterStore> =>
  Layer.effect(ProviderRateLimiter, make(options)).pipe(Layer.provide(RateLimiter.layer))

const quotaConfig = (provider: "OPENAI" | "ANTHROPIC", defaults: Quota): Config.Config<Quota> => {
  const optionalInt = (name: string, fallback: number | undefined) =>
    Config.option(Config.integer(`PLOT_ENGINE_${provider}_${name}`)).pipe(
      Config.map((value) => Option.getOrElse(value, () => fallback))
    )
  return Config.all({
    requestsPerMinute: Config.integer(`PLOT_ENGINE_${provider}_RPM`).pipe(
      Config.withDefault(defaults.requestsPerMinute)
    ),
    tokensPerMinute: optionalInt("TPM", defaults.tokensPerMinute),
    inputTokensPerMinute: optionalInt("ITPM", defaults.inputTokensPerMinute),
    outputTokensPerMinute: optionalInt("OTPM", defaults.outputTokensPerMinute),
    maxConcurrent: Config.integer(`PLOT_ENGINE_${provider}_MAX_CONCURRENT`).pipe(
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

/**
 * The in-memory limiter with its quotas from the environment (see `quotasConfig`).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig = (options: Omit<Options, "quotas"> = {}) =>
  Layer.unwrapEffect(Effect.map(quotasConfig, (quotas) => layerMemory({ ...options, quotas })))
