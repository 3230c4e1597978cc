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
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
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
  /** What the waiters that have not reserved yet will take: they are ahead of whoever arrives now. */
  pending: { requests: number; inputTokens: number; outputTokens: number }
  /** Permits taken after a wait so far: how far the permit queue has moved. */
  permitsTakenAfterWaiting: number
  /** How long an admitted request holds its permit, on average (recent calls weigh most); 0 before the first. */
  meanHoldMillis: number
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
      pausedUntil: 0,
      pending: { requests: 0, inputTokens: 0, outputTokens: 0 },
      permitsTakenAfterWaiting: 0,
      meanHoldMillis: 0
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

/** What the waiters that have not reserved yet take from a bucket. */
const pendingIn = (pending: KeyState["pending"], bucket: string): number => {
  switch (bucket) {
    case "rpm":
      return pending.requests
    case "tpm":
      return pending.inputTokens + pending.outputTokens
    case "itpm":
      return pending.inputTokens
    default:
      return pending.outputTokens
  }
}

/**
 * How long a request at `place` in the key's queue should wait, in milliseconds: the longer of the budgets' wait
 * (what the buckets hold against what the `aheadShare` of the waiters not yet reserved, and the request itself,
 * take; each refills over the window) and the permits' wait (the rounds of permit holders ahead, each as long as a
 * permit is held on average). An estimate, for the caller's screen and to refuse at once a wait that cannot end
 * in time; the admission itself is exact.
 */
export const expectedWait = (
  shared: Shared,
  state: KeyState,
  estimate: Estimate,
  { aheadShare, place }: { readonly place: number; readonly aheadShare: number }
): Effect.Effect<number> =>
  Effect.map(
    Effect.forEach(bucketsOf(state.quota, estimate), (b) =>
      Effect.map(shared.buckets.level(bucketKey(shared, state, b.name), b.limit), (level) => {
        const deficit = pendingIn(state.pending, b.name) * aheadShare + b.tokens - level
        return deficit <= 0 ? 0 : (deficit * windowMillis) / b.limit
      })),
    (budgetWaits) => {
      const free = state.permits - state.permitsHeld
      const permitWait = place <= free ? 0 : Math.ceil((place - free) / state.permits) * state.meanHoldMillis
      return Math.ceil(Math.max(0, permitWait, ...budgetWaits))
    }
  )

const windowMillis = 60_000

/** Admits a request to a key: its place in the queue, the wait, and the admission that settles it. */
export const admitTo = (
  shared: Shared,
  state: KeyState,
  target: Target,
  estimate: Estimate,
  options: AdmitOptions | undefined
): Effect.Effect<Admission, Errors.RateLimitError | Errors.QuotaExhaustedError, Scope.Scope> =>
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
    const deadline = Math.min(queuedAt + shared.queueTimeoutMillis, options?.until ?? Infinity)
    const refusals: Refusals = {
      saturated: (expectedWaitMs) =>
        new Errors.RateLimitError({
          provider: target.provider,
          model: target.model,
          local: true,
          // Not on this model again: it would queue behind the same crowd. The chain may move to another model.
          shouldRetry: false,
          // A wait of unknown length (permits held by calls none of which has finished yet) asks for no delay.
          ...(expectedWaitMs > 0 ? { retryAfterMs: expectedWaitMs } : {}),
          detail: `the quota of ${state.key} is saturated: ${
            expectedWaitMs > 0 ? `about ${formatSeconds(expectedWaitMs)} of waiting ahead` : "every permit is taken"
          }, longer than this request may wait (${formatSeconds(deadline - queuedAt)})`
        }),
      pausedTooLong: (waitMillis) =>
        new Errors.RateLimitError({
          provider: target.provider,
          model: target.model,
          local: true,
          retryAfterMs: waitMillis,
          detail: `the provider paused ${state.key} for ${
            Duration.format(Duration.millis(waitMillis))
          }, longer than this request may wait`
        })
    }
    // A key paused past what this caller waits is refused before it queues for a permit behind others.
    const maxPause = options?.maxPause
    const pausedFor = state.pausedUntil - queuedAt
    if (pausedFor > 0 && (pausedFor > (maxPause ?? Infinity) || state.pausedUntil > deadline)) {
      return yield* refusals.pausedTooLong(pausedFor)
    }
    // A wait that cannot end in time is refused now, with how long it would take, not at the deadline.
    const place = state.queued + 1
    const expected = yield* expectedWait(shared, state, estimate, { place, aheadShare: 1 })
    if (expected > 0 && queuedAt + expected > deadline) return yield* refusals.saturated(expected)
    const depth = Metrics.tagged(shared.queueDepth, { key: state.key })
    state.queued++
    let pending = true
    addPending(state, estimate, 1)
    const leavePending = () => {
      if (pending) addPending(state, estimate, -1)
      pending = false
    }
    yield* Metric.incrementBy(depth, 1)
    const onQueued = told(options?.onQueued)
    if (onQueued !== undefined && (expected > 0 || state.permitsHeld >= state.permits)) {
      yield* onQueued({ place, expectedWaitMs: expected })
    }
    yield* waitFor(shared, state, estimate, { deadline, maxPause, refusals, place, onQueued, leavePending }).pipe(
      Effect.ensuring(Effect.zipRight(
        Effect.sync(() => {
          state.queued--
          leavePending()
        }),
        Metric.incrementBy(depth, -1)
      ))
    )
    yield* Metric.update(
      Metrics.tagged(shared.waitTime, { key: state.key }),
      (yield* Clock.currentTimeMillis) - queuedAt
    )
    yield* Effect.acquireRelease(Effect.sync(() => state.inFlight++), () => Effect.sync(() => state.inFlight--))
    return { reconcile: reconcileWith(shared, state, estimate), cancel: giveBack(shared, state, estimate) }
  })

/** A caller's `onQueued`, told only what changed since it was last told. */
const told = (onQueued: AdmitOptions["onQueued"]): AdmitOptions["onQueued"] => {
  if (onQueued === undefined) return undefined
  let last: ProviderRateLimiter.Queued | undefined
  return (queued) => {
    if (last !== undefined && last.place === queued.place && last.expectedWaitMs === queued.expectedWaitMs) {
      return Effect.void
    }
    last = queued
    return onQueued(queued)
  }
}

const formatSeconds = (millis: number) => `${Math.ceil(millis / 1000)} s`

/** The local refusals of one admission: the quota saturated past its deadline, or a 429's pause too long. */
interface Refusals {
  readonly saturated: (expectedWaitMs: number) => Errors.RateLimitError
  readonly pausedTooLong: (waitMillis: number) => Errors.RateLimitError
}

const addPending = (state: KeyState, estimate: Estimate, sign: 1 | -1) => {
  state.pending = {
    requests: state.pending.requests + sign,
    inputTokens: state.pending.inputTokens + sign * estimate.inputTokens,
    outputTokens: state.pending.outputTokens + sign * estimate.outputTokens
  }
}

/** How often a caller queued for a permit hears its place again. */
const queuedUpdateEvery = Duration.seconds(5)

/**
 * The wait of one request, in three steps: a concurrency permit (held until the admission's scope closes), the
 * gate a provider 429 closed, then one reservation across every bucket and the sleep it implies. Fails with a
 * local `RateLimitError` when the wait cannot end by `deadline`, giving back what it reserved.
 */
const waitFor = (
  shared: Shared,
  state: KeyState,
  reserved: Estimate,
  { deadline, leavePending, maxPause, onQueued, place, refusals }: {
    readonly deadline: number
    readonly maxPause: number | undefined
    readonly refusals: Refusals
    readonly place: number
    readonly onQueued: AdmitOptions["onQueued"]
    readonly leavePending: () => void
  }
): Effect.Effect<void, Errors.RateLimitError, Scope.Scope> =>
  Effect.gen(function*() {
    // 1. A permit, in arrival order. Only a waiter that has to queue for it gets a timer (checked and taken
    // without yielding, so nobody slips in between). The wait stays interruptible (a timeout or the caller may
    // end it); once taken, its release is registered before anything can interrupt. How long permits are held
    // is remembered, for the estimates.
    const permit = Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(restore(state.semaphore.take(1)), Effect.sync(() => state.permitsHeld++)).pipe(
        Effect.zipRight(Clock.currentTimeMillis),
        Effect.flatMap((takenAt) =>
          Effect.addFinalizer(() =>
            Effect.map(Clock.currentTimeMillis, (now) => {
              const held = now - takenAt
              state.meanHoldMillis = state.meanHoldMillis === 0 ? held : 0.8 * state.meanHoldMillis + 0.2 * held
              state.permitsHeld--
            }).pipe(Effect.zipRight(state.semaphore.release(1)))
          )
        )
      )
    )
    if (state.permitsHeld < state.permits) {
      yield* permit
    } else {
      const movedBefore = state.permitsTakenAfterWaiting
      const placeNow = () => Math.max(1, place - (state.permitsTakenAfterWaiting - movedBefore))
      const estimateNow = Effect.suspend(() => {
        const others = Math.max(1, state.pending.requests - 1)
        const at = placeNow()
        return expectedWait(shared, state, reserved, { place: at, aheadShare: Math.min(1, (at - 1) / others) })
      })
      const ticker = onQueued === undefined ? undefined : yield* Effect.fork(
        Effect.schedule(
          Effect.flatMap(estimateNow, (expectedWaitMs) => onQueued({ place: placeNow(), expectedWaitMs })),
          Schedule.spaced(queuedUpdateEvery)
        )
      )
      yield* permit.pipe(
        Effect.timeout(Math.max(0, deadline - (yield* Clock.currentTimeMillis))),
        Effect.catchTag("TimeoutException", () => Effect.flatMap(estimateNow, (wait) => refusals.saturated(wait))),
        Effect.ensuring(ticker === undefined ? Effect.void : Fiber.interrupt(ticker))
      )
      state.permitsTakenAfterWaiting++
    }
    // 2. In arrival order (the lock is fair): the gate a provider 429 closed, for everybody (re-read on waking:
    // a later 429 may extend it), then one reservation across every bucket.
    const delay = yield* state.reserving.withPermits(1)(Effect.gen(function*() {
      for (let now = yield* Clock.currentTimeMillis; now < state.pausedUntil; now = yield* Clock.currentTimeMillis) {
        if (state.pausedUntil - now > (maxPause ?? Infinity) || state.pausedUntil > deadline) {
          return yield* refusals.pausedTooLong(state.pausedUntil - now)
        }
        yield* Effect.sleep(state.pausedUntil - now)
      }
      const results = yield* Effect.forEach(
        bucketsOf(state.quota, reserved),
        (b) => shared.buckets.take(bucketKey(shared, state, b.name), b.limit, b.tokens)
      )
      leavePending()
      return Math.max(0, ...results.map((result) => result.delay))
    }))
    if (delay > 0 && (yield* Clock.currentTimeMillis) + delay > deadline) {
      yield* giveBack(shared, state, reserved)
      return yield* refusals.saturated(delay)
    }
    // 3. The wait the reservation implies.
    if (delay > 0 && onQueued !== undefined) yield* onQueued({ place: 1, expectedWaitMs: delay })
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
