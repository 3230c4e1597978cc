/**
 * The keys of the rate limiter: each key's permits, queue and gate, the wait of one request through them, the
 * reconciliation after the call, a provider 429's pause, the headers a response carries, and what a key holds now.
 * `ProviderRateLimiter` keeps the keys and serves its `Service` with these.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import * as Errors from "../Errors.js"
import type * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import * as Metrics from "./metrics.js"
import type * as TokenBuckets from "./tokenBuckets.js"
import * as Wire from "./wire.js"

type Quota = ProviderRateLimiter.Quota
type Estimate = ProviderRateLimiter.Estimate
type Target = ProviderRateLimiter.Target
type AdmitOptions = ProviderRateLimiter.AdmitOptions
type Admission = ProviderRateLimiter.Admission
type KeySnapshot = ProviderRateLimiter.KeySnapshot

/** The state of one key: its permits, what waits and runs, the limits in force and the gate a 429 closed. */
export interface KeyState {
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
export interface Shared {
  readonly buckets: TokenBuckets.TokenBuckets
  readonly prefix: string
  readonly queueTimeoutMillis: number
  readonly adaptive: boolean
  /** The limiter's metrics: requests waiting, and how long admissions waited (both tagged `key`). */
  readonly queueDepth: Metric.Metric.Gauge<number>
  readonly waitTime: Metric.Metric.Histogram<number>
}

/** A key as it starts: its quota's permits, nothing queued, the gate open. */
export const makeKeyState = (key: string, quota: Quota): Effect.Effect<KeyState> =>
  Effect.map(
    Effect.all([Effect.makeSemaphore(quota.maxConcurrent), Effect.makeSemaphore(1)]),
    ([semaphore, reserving]) => ({
      key,
      semaphore,
      reserving,
      quota,
      permits: quota.maxConcurrent,
      permitsHeld: 0,
      queued: 0,
      inFlight: 0,
      pausedUntil: 0
    })
  )

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

/** Admits a request to a key: its place in the queue, the wait, and the admission that settles it. */
export const admitTo = (
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
    const pausedTooLong = (waitMillis: number) =>
      new Errors.RateLimitError({
        provider: target.provider,
        model: target.model,
        local: true,
        retryAfterMs: waitMillis,
        detail: `the provider paused ${state.key} for ${
          Duration.format(Duration.millis(waitMillis))
        }, longer than this caller waits`
      })
    // A key paused past what this caller waits is refused before it queues for a permit behind others.
    const maxPause = options?.maxPause
    if (maxPause !== undefined && state.pausedUntil - queuedAt > maxPause) {
      return yield* pausedTooLong(state.pausedUntil - queuedAt)
    }
    const depth = Metrics.tagged(shared.queueDepth, { key: state.key })
    state.queued++
    yield* Metric.incrementBy(depth, 1)
    const limits = {
      deadline: callerFirst ? until : queueDeadline,
      timedOut,
      maxPause,
      pausedTooLong
    }
    yield* waitFor(shared, state, estimate, limits).pipe(
      Effect.ensuring(Effect.zipRight(Effect.sync(() => state.queued--), Metric.incrementBy(depth, -1)))
    )
    yield* Metric.update(
      Metrics.tagged(shared.waitTime, { key: state.key }),
      (yield* Clock.currentTimeMillis) - queuedAt
    )
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
  { deadline, maxPause, pausedTooLong, timedOut }: {
    readonly deadline: number
    readonly timedOut: Errors.RateLimitError | Errors.TimeoutError
    readonly maxPause: number | undefined
    readonly pausedTooLong: (waitMillis: number) => Errors.RateLimitError
  }
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
        if (maxPause !== undefined && state.pausedUntil - now > maxPause) {
          return yield* pausedTooLong(state.pausedUntil - now)
        }
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
export const pauseKey = (shared: Shared, state: KeyState, millis: number): Effect.Effect<void> =>
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
export const observeOn = (shared: Shared, state: KeyState, headers: Wire.Headers): Effect.Effect<void> =>
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

export const snapshotOf = (shared: Shared, state: KeyState): Effect.Effect<KeySnapshot> =>
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
