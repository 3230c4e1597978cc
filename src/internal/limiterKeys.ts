/**
 * The keys of the rate limiter: each key's permits, queue and gate, the wait of one request through them, the
 * reconciliation after the call, a provider 429's pause, the headers a response carries, and what a key holds now.
 * `ProviderRateLimiter` keeps the keys and serves its `Service` with these.
 *
 * A key is a state machine driven by plain functions: an arrival, a release, a 429 or the key's one timer calls
 * `pump`, which admits the head of the queue while a permit is free and the gate is open, refuses waiters at
 * their deadlines and schedules the next moment it must look again. A waiter holds no fiber, timer, lock or scope
 * of its own: its caller's fiber waits in one `Effect.async`, resumed by the pump with its verdict. With the
 * buckets in memory a reservation across every bucket is one synchronous step; over a remote store (Redis) it is
 * one effect per admission, in a fiber of the limiter.
 *
 * @internal
 */
import type * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import type * as Metric from "effect/Metric"
import * as Errors from "../Errors.js"
import type * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import type * as QuotaSignals from "../QuotaSignals.js"
import * as LimiterLearning from "./limiterLearning.js"
import * as Metrics from "./metrics.js"
import * as MinHeap from "./minHeap.js"
import * as QueueOrder from "./queueOrder.js"
import type * as TokenBuckets from "./tokenBuckets.js"
import * as Wire from "./wire.js"

type Quota = ProviderRateLimiter.Quota
type Estimate = ProviderRateLimiter.Estimate
type Target = ProviderRateLimiter.Target
type AdmitOptions = ProviderRateLimiter.AdmitOptions
type Admission = ProviderRateLimiter.Admission
type KeySnapshot = ProviderRateLimiter.KeySnapshot
type Lane = ProviderRateLimiter.Lane

/**
 * One caller's way through a key: `waiting` in the queue; `admitted` (a permit and the reservation are its; it
 * sleeps the wait the reservation implies, woken by the key's timer); `delivered` (its caller holds the
 * `Admission`, the reservation is the caller's to reconcile); `gone` (refused, interrupted or released). The pump
 * moves it from `waiting`, and wakes it from its sleep, by calling `resume`; a provider 429 puts it back from
 * `admitted` to `waiting`; `release` ends it from any state, once.
 */
export interface Waiter {
  readonly estimate: Estimate
  /** Interactive waiters go ahead of batch ones; batch ones leave a key's reserved permits and take no debt. */
  readonly lane: Lane
  readonly target: Target
  readonly queuedAt: number
  /** Its order of arrival at the key. */
  readonly arrival: number
  readonly deadline: number
  readonly maxPause: number | undefined
  readonly onQueued: AdmitOptions["onQueued"]
  /** Its slot in its lane's queue, while it is there (see `KeyState.interactiveOrder`). */
  slot: number
  status: "new" | "waiting" | "admitted" | "delivered" | "gone"
  /** When it took its permit: how long permits are held is learnt from it. */
  admittedAt: number
  /** Its reservation among the key's `recent` ones, once made. */
  reserved: LimiterLearning.Reserved | undefined
  /** Admitted and sleeping its reservation's wait: the alarm that wakes it (others of its alarms are stale). */
  wake: Alarm | undefined
  /** Its caller, awaiting the pump's verdict (see `resumeWith`). */
  resume: ((outcome: Effect.Effect<number, Errors.RateLimitError>) => void) | undefined
  /** A verdict given while its caller was not awaiting one (running its `onQueued`, or not yet run). */
  verdict: Effect.Effect<number, Errors.RateLimitError> | undefined
  /** Ends its way through the key from whichever state it is in (see `release`): made once, used by every path. */
  release: Effect.Effect<void>
}

/**
 * A moment the pump must act at: a waiter's deadline, the next time it hears its place, or the end of an admitted
 * waiter's sleep.
 */
interface Alarm {
  readonly at: number
  readonly seq: number
  readonly waiter: Waiter
  readonly kind: "deadline" | "tell" | "wake"
}

/** The state of one key: its queue and permits, what waits and runs, the limits in force and the gate a 429 closed. */
export interface KeyState {
  readonly key: string
  /** The limits in force: the configured ones, cut by 429s and climbing back, or the provider's reported ones. */
  quota: Quota
  readonly configured: Quota
  /** Limits the provider reported in its headers (trusted: they raise as well as lower). */
  readonly reported: { -readonly [F in LimiterLearning.QuotaField]?: number }
  /** When the limits in force last came down or climbed (the climb is a step per minute without a 429). */
  limitsChangedAt: number
  /**
   * How the provider counts a prompt against the caller's estimate (see `LimiterLearning.learnInputScale`); 1 at
   * first.
   */
  inputScale: number
  /** When a 429 at the edge last passed without a cut (see `LimiterLearning.atTheEdge`). */
  edgePassedAt: number
  /**
   * What was sent in the last minute, oldest first (from `recentHead`): what a 429 says the quota is below. Each
   * reservation as made, then as counted when reconciled, and nothing once given back (never sent).
   */
  recent: Array<LimiterLearning.Reserved>
  recentHead: number
  /** Concurrency permits, and how many are taken (admitted and not yet released). */
  readonly permits: number
  permitsHeld: number
  /** The permits batch requests may hold (the rest are kept for interactive ones), and how many they hold. */
  readonly batchPermits: number
  batchHeld: number
  /** Callers waiting: in the queue, or admitted and sleeping the wait their reservation implies. */
  queued: number
  /**
   * The admitted callers sleeping the wait their reservation implies, or, admitted with none, whose callers have not
   * run again yet, in the order they were admitted: what a provider 429 puts back in the queue.
   */
  readonly sleeping: Set<Waiter>
  inFlight: number
  pausedUntil: number
  /** The limits the 429s of the pause in force (its episode) reached, and whether the episode cut them. */
  pauseLimits: ReadonlyArray<LimiterLearning.QuotaField>
  pauseCut: boolean
  /** What the waiters that have not reserved yet will take: they are ahead of whoever arrives now. */
  pending: Pending
  /** Of that, the interactive waiters': all that is ahead of an interactive arrival. */
  pendingInteractive: Pending
  /** The places of the waiters in each lane's queue, by their slots: how many wait ahead of each. */
  readonly interactiveOrder: QueueOrder.QueueOrder
  readonly batchOrder: QueueOrder.QueueOrder
  /** How long an admitted request holds its permit, on average (recent calls weigh most); 0 before the first. */
  meanHoldMillis: number
  /**
   * When a caller last looked the key up (see `forgettable`): one that has, and has not yet queued or taken a permit
   * (its fiber may pause between the two), holds nothing the key can see.
   */
  lookedUpAt: number
  /**
   * The interactive waiters in arrival order (`queueHead` is the first not yet gone; gone ones are skipped lazily),
   * and the batch ones behind them.
   */
  queue: Array<Waiter>
  queueHead: number
  batchQueue: Array<Waiter>
  batchQueueHead: number
  /** Deadlines and times to tell, earliest first (mostly set in order: a queue, with a heap for the others). */
  readonly alarms: MinHeap.MinQueue<Alarm>
  alarmSeq: number
  /** A reservation with a remote store is under way: the head waits for it. */
  reserving: boolean
  /** Resumed once no reservation is under way (a 429's drain of the store waits for the one under way). */
  afterReserving: Array<() => void>
  /** The provider 429s met at the key so far: a reservation under way when one came is made again after it. */
  pauses: number
  /** How many callers have arrived at the key (see `Waiter.arrival`). */
  arrivals: number
  /** The pump is running (a call from inside it only asks it to look again: `dirty`). */
  pumping: boolean
  dirty: boolean
  /** Waiters to tell their place, told together by one fiber once the pump is done. */
  tells: Array<readonly [Waiter, ProviderRateLimiter.Queued]>
  /** The one timer of the key, when it rings, and whether it is ringing (driving the key) now. */
  alarmAt: number | undefined
  alarmFiber: Fiber.RuntimeFiber<void> | undefined
  ringing: boolean
  /** The store key of each bucket, made once. */
  readonly storeKeys: Record<string, string>
  /** With a remote store: what each bucket held when the store last said, and when (for the pump's estimates). */
  readonly known: Record<string, { readonly remaining: number; readonly at: number }>
  /** The metrics of this key, tagged once. */
  readonly depthGauge: Metric.Metric.Gauge<number>
  readonly waitTimeHistogram: Metric.Metric.Histogram<number>
}

/** What the waiters that have not reserved yet will take. */
interface Pending {
  requests: number
  inputTokens: number
  outputTokens: number
}

/** What every key of one limiter shares. */
export interface Shared {
  readonly buckets: TokenBuckets.TokenBuckets
  /** The share of each key's permits kept for interactive requests (see `makeKeyState`). */
  readonly interactiveShare: number
  readonly prefix: string
  readonly queueTimeoutMillis: number
  readonly adaptive: boolean
  /** The limiter's clock: the pump reads the time without an effect. */
  readonly clock: Clock.Clock
  /**
   * The `key` label of a key's metrics: the keys of the default catalog's models and of the configured quotas, and
   * the first others, 256 in all, by name; the rest as `other`, their queue depths summed (a request may pin any
   * model, and each model is a key: see `Metrics.boundedLabel`).
   */
  readonly keyLabel: (key: string) => string
  /** The limiter's metrics: requests waiting, and how long admissions waited (both tagged `key`). */
  readonly queueDepth: Metric.Metric.Gauge<number>
  readonly waitTime: Metric.Metric.Histogram<number>
  /**
   * Starts a fiber of the limiter (a key's timer, a reservation with a remote store, the place told to waiters)
   * in the limiter's own runtime, so that it belongs to the limiter, not to whichever caller set it off.
   */
  readonly runDaemon: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
  /**
   * Tells the other instances sharing the quota what a 429 taught this one (see `QuotaSignals`); set once the
   * limiter has joined them, a no-op until then and without a `QuotaSignals`.
   */
  tell: (signal: QuotaSignals.Signal) => void
}

/** A key as it starts: its quota's permits, nothing queued, the gate open, no timer. */
export const makeKeyState = (shared: Shared, key: string, quota: Quota): KeyState => ({
  key,
  quota,
  configured: quota,
  reported: {},
  limitsChangedAt: 0,
  inputScale: 1,
  edgePassedAt: -Infinity,
  recent: [],
  recentHead: 0,
  permits: quota.maxConcurrent,
  permitsHeld: 0,
  // At least one permit kept for interactive requests when there are several and a share is asked for.
  batchPermits: shared.interactiveShare > 0 && quota.maxConcurrent > 1
    ? quota.maxConcurrent - Math.max(1, Math.floor(quota.maxConcurrent * shared.interactiveShare))
    : quota.maxConcurrent,
  batchHeld: 0,
  queued: 0,
  sleeping: new Set(),
  inFlight: 0,
  pausedUntil: 0,
  pauseLimits: [],
  pauseCut: false,
  pending: { requests: 0, inputTokens: 0, outputTokens: 0 },
  pendingInteractive: { requests: 0, inputTokens: 0, outputTokens: 0 },
  interactiveOrder: new QueueOrder.QueueOrder(),
  batchOrder: new QueueOrder.QueueOrder(),
  meanHoldMillis: 0,
  lookedUpAt: 0,
  queue: [],
  queueHead: 0,
  batchQueue: [],
  batchQueueHead: 0,
  alarms: new MinHeap.MinQueue((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq)),
  alarmSeq: 0,
  reserving: false,
  afterReserving: [],
  pauses: 0,
  arrivals: 0,
  pumping: false,
  dirty: false,
  tells: [],
  alarmAt: undefined,
  alarmFiber: undefined,
  ringing: false,
  storeKeys: Object.fromEntries(
    ["rpm", "tpm", "itpm", "otpm"].map((bucket) => [bucket, `${shared.prefix}${key}:${bucket}`])
  ),
  known: {},
  depthGauge: Metrics.tagged(shared.queueDepth, { key: shared.keyLabel(key) }),
  waitTimeHistogram: Metrics.tagged(shared.waitTime, { key: shared.keyLabel(key) })
})

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

const giveBack = (shared: Shared, state: KeyState, waiter: Waiter): Effect.Effect<void> => {
  const local = shared.buckets.local
  if (local !== undefined) {
    return Effect.sync(() => giveBackLocally(local, state, waiter, shared.clock.unsafeCurrentTimeMillis()))
  }
  LimiterLearning.forgetReservation(waiter)
  return Effect.forEach(
    bucketsOf(state.quota, waiter.estimate),
    (b) => shared.buckets.refund(state.storeKeys[b.name]!, b.limit, b.tokens),
    { discard: true }
  )
}

/**
 * A reservation given back, then the key driven: the next head reserves with those tokens there (driven first, it
 * would wait for them as if they were still taken).
 */
const giveBackThenPump = (shared: Shared, state: KeyState, waiter: Waiter): Effect.Effect<void> => {
  const local = shared.buckets.local
  if (local !== undefined) {
    giveBackLocally(local, state, waiter, shared.clock.unsafeCurrentTimeMillis())
    pump(shared, state)
    return Effect.void
  }
  return Effect.ensuring(giveBack(shared, state, waiter), Effect.sync(() => pump(shared, state)))
}

/** What the waiters that have not reserved yet take from a bucket. */
const pendingIn = (pending: Pending, bucket: string): number => {
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
 * (what the buckets hold, `levelOf`, against what the `aheadShare` of the waiters not yet reserved, and the
 * request itself, take; each refills over the window) and the permits' wait (the rounds of permit holders ahead,
 * each as long as a permit is held on average). An estimate, for the caller's screen and to refuse at once a wait
 * that cannot end in time; the admission itself is exact.
 */
const expectedWait = (
  state: KeyState,
  estimate: Estimate,
  { aheadShare, lane, place, ...pending }: {
    readonly place: number
    readonly aheadShare: number
    readonly lane: Lane
    /** The waiters not yet reserved that may be ahead: by default all of its lane's (the request is not one yet). */
    readonly ahead?: Pending
  },
  levelOf: (bucket: string, limit: number) => number
): number => {
  let wait = 0
  const ahead = pending.ahead ?? (lane === "interactive" ? state.pendingInteractive : state.pending)
  for (const b of bucketsOf(state.quota, estimate)) {
    const deficit = pendingIn(ahead, b.name) * aheadShare + b.tokens - levelOf(b.name, b.limit)
    if (deficit > 0) wait = Math.max(wait, (deficit * LimiterLearning.windowMillis) / b.limit)
  }
  const free = lane === "batch"
    ? Math.min(state.batchPermits - state.batchHeld, state.permits - state.permitsHeld)
    : state.permits - state.permitsHeld
  const rounds = lane === "batch" ? state.batchPermits : state.permits
  const permitWait = place <= free ? 0 : Math.ceil((place - free) / rounds) * state.meanHoldMillis
  return Math.ceil(Math.max(wait, permitWait))
}

/**
 * What a bucket holds at `now`, for the pump's estimates: exact with buckets in memory; with a remote store, what
 * it last reported, refilled since (other instances may have taken some: an estimate).
 */
const levelNow = (shared: Shared, state: KeyState, now: number) => (bucket: string, limit: number): number => {
  const local = shared.buckets.local
  if (local !== undefined) return local.level(state.storeKeys[bucket]!, limit, now)
  const known = state.known[bucket]
  return known === undefined
    ? limit
    : Math.min(limit, known.remaining + ((now - known.at) * limit) / LimiterLearning.windowMillis)
}

const formatSeconds = (millis: number) => `${Math.ceil(millis / 1000)} s`

/**
 * A quota that cannot be met in time: the wait foreseen from `from` ends past the caller's deadline. The message
 * sets it against the time the caller has left then, not the whole time it was allowed (a waiter refused after a
 * while in the queue has less left than it came with).
 */
const saturated = (state: KeyState, waiter: Waiter, expectedWaitMs: number, from: number) =>
  new Errors.RateLimitError({
    provider: waiter.target.provider,
    model: waiter.target.model,
    local: true,
    // Not on this model again: it would queue behind the same crowd. The chain may move to another model.
    shouldRetry: false,
    // A wait of unknown length (permits held by calls none of which has finished yet) asks for no delay.
    ...(expectedWaitMs > 0 ? { retryAfterMs: expectedWaitMs } : {}),
    detail: `the quota of ${state.key} is saturated: ${
      expectedWaitMs > 0 ? `about ${formatSeconds(expectedWaitMs)} of waiting ahead` : "every permit is taken"
    }, past this request's deadline (${
      waiter.deadline > from ? `${formatSeconds(waiter.deadline - from)} left` : "reached"
    })`
  })

/** A provider 429 paused the key for longer than the caller may wait. */
const pausedTooLong = (state: KeyState, target: Target, waitMillis: number) =>
  new Errors.RateLimitError({
    provider: target.provider,
    model: target.model,
    local: true,
    retryAfterMs: waitMillis,
    detail: `the provider paused ${state.key} for ${
      Duration.format(Duration.millis(waitMillis))
    }, longer than this request may wait`
  })

/** Whether the pause in force, `pausedFor` more milliseconds, is longer than the waiter may wait. */
const pauseRefuses = (state: KeyState, pausedFor: number, maxPause: number | undefined, deadline: number) =>
  pausedFor > 0 && (pausedFor > (maxPause ?? Infinity) || state.pausedUntil > deadline)

/** An admission, and the release of its permit, which its caller owes once the call is over. */
export interface Admitted {
  readonly admission: Admission
  readonly release: Effect.Effect<void>
}

/** Makes the waits of an admission interruptible again, within the caller's `uninterruptibleMask`. */
export type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/**
 * What the caller does once admitted, still in its mask. Passed in rather than `flatMap`ped on: a queued caller's
 * fiber holds every frame around its wait, and the effect each frame was made from, until it is admitted.
 */
export type Then<A, E, R> = (admitted: Admitted) => Effect.Effect<A, E, R>

type Refusal = Errors.RateLimitError | Errors.QuotaExhaustedError

/**
 * Admits a request to a key: refused at once when it can never fit, when the key is paused past what it waits,
 * or when the wait foreseen ends after its deadline; otherwise queued for the pump, in arrival order (or, nobody
 * ahead and a permit free, reserved by the caller itself). Once admitted it holds a permit until it is released,
 * after sleeping the wait its reservation implies (a provider 429 meanwhile puts it back at the head of the queue,
 * its reservation given back).
 *
 * Run it uninterruptible, with `restore` from the same mask: only its waits are interruptible, each undone where it
 * is interrupted, so a caller interrupted on the way leaves nothing behind, and one admitted holds its `release`.
 * (One mask for the whole way: an `onInterrupt` per wait would hold a mask and two handlers per queued caller.)
 */
export const admitTo = <A, E, R>(
  shared: Shared,
  stateOf: () => KeyState,
  target: Target,
  estimate: Estimate,
  options: AdmitOptions | undefined,
  restore: Restore,
  then: Then<A, E, R>
): Effect.Effect<A, E | Refusal, R> =>
  Effect.suspend((): Effect.Effect<A, E | Refusal, R> => {
    const state = stateOf()
    const queuedAt = shared.clock.unsafeCurrentTimeMillis()
    const tooLarge = bucketsOf(state.quota, estimate).find((b) => b.tokens > b.limit)
    if (tooLarge !== undefined) {
      return Effect.fail(
        new Errors.QuotaExhaustedError({
          provider: target.provider,
          model: target.model,
          reason: "request_too_large",
          detail: `the request needs ${tooLarge.tokens} of a ${tooLarge.name} budget of ${tooLarge.limit}: ` +
            "it can never be admitted"
        })
      )
    }
    const deadline = Math.min(queuedAt + shared.queueTimeoutMillis, options?.until ?? Infinity)
    const maxPause = options?.maxPause
    // A key paused past what this caller waits is refused before it queues behind others.
    if (pauseRefuses(state, state.pausedUntil - queuedAt, maxPause, deadline)) {
      return Effect.fail(pausedTooLong(state, target, state.pausedUntil - queuedAt))
    }
    const lane = options?.lane ?? "interactive"
    const waiter: Waiter = {
      estimate,
      lane,
      target,
      queuedAt,
      arrival: state.arrivals++,
      deadline,
      maxPause,
      onQueued: told(options?.onQueued),
      slot: -1,
      status: "new",
      reserved: undefined,
      wake: undefined,
      admittedAt: 0,
      resume: undefined,
      verdict: undefined,
      release: Effect.void
    }
    waiter.release = release(shared, state, waiter)
    if (goesNow(shared, state, waiter, queuedAt)) return reserveNow(shared, state, waiter, restore, then)
    // With a remote store, what its buckets held when it last said: no round trip before the caller has its place.
    const place = arrivalPlace(state, lane)
    const expected = expectedWait(state, estimate, { place, aheadShare: 1, lane }, levelNow(shared, state, queuedAt))
    return queue(shared, state, waiter, { place, expectedWaitMs: expected }, restore, then)
  })

/**
 * Whether an arrival may reserve at once, itself: nobody of its lane or before it queued, a permit it may take free,
 * the gate open; a batch arrival only when the buckets hold what it takes (see `mayTakePermit`, `fitsNow`).
 */
const goesNow = (shared: Shared, state: KeyState, waiter: Waiter, now: number) => {
  if (state.reserving || state.pausedUntil > now + nanosecond || !mayTakePermit(state, waiter)) return false
  if (waiter.lane === "interactive") return interactiveHead(state) === undefined
  return headOf(state) === undefined && untilFits(shared, state, waiter.estimate, now) === 0
}

/** Whether a waiter may take a permit now: one is free, and for a batch waiter, not one kept for interactive ones. */
const mayTakePermit = (state: KeyState, waiter: Waiter) =>
  state.permitsHeld < state.permits && (waiter.lane === "interactive" || state.batchHeld < state.batchPermits)

/**
 * How long until the buckets hold what a request takes, in milliseconds (0: now). A batch request is admitted only
 * then, so that it never reserves ahead into what the buckets have not refilled: an interactive request arriving
 * meanwhile waits for its own tokens, not behind a batch's debt.
 */
const untilFits = (shared: Shared, state: KeyState, estimate: Estimate, now: number): number => {
  const levelOf = levelNow(shared, state, now)
  let wait = 0
  for (const b of bucketsOf(state.quota, estimate)) {
    const deficit = b.tokens - levelOf(b.name, b.limit)
    if (deficit > 0) wait = Math.max(wait, Math.ceil((deficit * LimiterLearning.windowMillis) / b.limit))
  }
  return wait
}

/** A permit taken, or given back, by a waiter of a lane. */
const holdPermit = (state: KeyState, waiter: Waiter, by: 1 | -1) => {
  state.permitsHeld += by
  if (waiter.lane === "batch") state.batchHeld += by
}

/**
 * The uncontended path, without the queue: the permit taken and the reservation made by the caller (in one step
 * with buckets in memory; with a remote store, arrivals meanwhile queue and the pump waits until it is done, so
 * the order holds).
 */
const reserveNow = <A, E, R>(
  shared: Shared,
  state: KeyState,
  waiter: Waiter,
  restore: Restore,
  then: Then<A, E, R>
): Effect.Effect<A, E | Errors.RateLimitError, R> => {
  waiter.status = "admitted"
  waiter.admittedAt = waiter.queuedAt
  holdPermit(state, waiter, 1)
  changeQueued(state, 1)
  const local = shared.buckets.local
  if (local !== undefined) {
    return reservedNow(
      shared,
      state,
      waiter,
      restore,
      then,
      reserveLocally(local, state, waiter, waiter.queuedAt)
    )
  }
  state.reserving = true
  const pauses = state.pauses
  return Effect.flatMap(
    Effect.ensuring(
      Effect.flatMap(reserveInStore(shared, state, waiter), (delay) =>
        // Overtaken by a provider 429: made against budget the provider has not got, it goes back.
        state.pauses === pauses ? Effect.succeed(delay) : Effect.as(giveBack(shared, state, waiter), overtaken)),
      Effect.sync(() => endReservation(shared, state))
    ),
    (delay) =>
      delay === overtaken
        ? queueAgain(shared, state, waiter, restore, then)
        : reservedNow(shared, state, waiter, restore, then, delay)
  )
}

/** The wait of a reservation a provider 429 overtook (see `reserveNow`). */
const overtaken = -1

/**
 * An arrival whose reservation a provider 429 overtook, the reservation given back: its permit goes back too, and it
 * queues among the callers the 429 put back in the queue, in order of arrival (ahead of those that came after it),
 * to reserve again after the pause; refused at once when the pause is longer than it may wait (see
 * `requeueSleepers`).
 */
const queueAgain = <A, E, R>(
  shared: Shared,
  state: KeyState,
  waiter: Waiter,
  restore: Restore,
  then: Then<A, E, R>
): Effect.Effect<A, E | Errors.RateLimitError, R> => {
  holdPermit(state, waiter, -1)
  const now = shared.clock.unsafeCurrentTimeMillis()
  const pausedFor = state.pausedUntil - now
  if (pauseRefuses(state, pausedFor, waiter.maxPause, waiter.deadline)) {
    waiter.status = "gone"
    changeQueued(state, -1)
    return Effect.fail(pausedTooLong(state, waiter.target, pausedFor))
  }
  // Queued here, in the caller's mask, before its wait can be interrupted: interrupted there, it leaves the queue once
  // (`release`); queued only from inside the wait, it was interrupted as it began and gave its permit back twice.
  waiter.status = "waiting"
  addPending(state, waiter, 1)
  pushAlarm(state, waiter, waiter.deadline, "deadline")
  if (waiter.onQueued !== undefined) pushAlarm(state, waiter, now + queuedUpdateEveryMillis, "tell")
  insertByArrival(state, waiter)
  pump(shared, state)
  return waitThenDeliver(shared, state, waiter, nextVerdict(waiter), restore, then)
}

/** A waiter put in its lane's queue among those waiting there, in order of arrival. */
const insertByArrival = (state: KeyState, waiter: Waiter) => {
  const interactive = waiter.lane === "interactive"
  // The queue without its front, where those that left it still are.
  const live = interactive ? state.queue.slice(state.queueHead) : state.batchQueue.slice(state.batchQueueHead)
  const after = live.findIndex((other) => other.status === "waiting" && other.arrival > waiter.arrival)
  live.splice(after < 0 ? live.length : after, 0, waiter)
  if (interactive) {
    state.queue = live
    state.queueHead = 0
    renumber(live, state.interactiveOrder)
  } else {
    state.batchQueue = live
    state.batchQueueHead = 0
    renumber(live, state.batchOrder)
  }
}

/** An arrival's own reservation, `delay` its wait: delivered after it, or refused when that ends too late. */
const reservedNow = <A, E, R>(
  shared: Shared,
  state: KeyState,
  waiter: Waiter,
  restore: Restore,
  then: Then<A, E, R>,
  delay: number
): Effect.Effect<A, E | Errors.RateLimitError, R> => {
  if (delay === 0) return deliverAfter(shared, state, waiter, 0, restore, then)
  if (waiter.queuedAt + delay <= waiter.deadline) {
    sleepUntil(state, waiter, waiter.queuedAt + delay)
    pump(shared, state)
    return deliverAfter(shared, state, waiter, delay, restore, then)
  }
  // Refused: the permit and the reservation go back (a permit never used says nothing of how long calls hold one).
  waiter.status = "gone"
  changeQueued(state, -1)
  holdPermit(state, waiter, -1)
  return Effect.zipRight(
    giveBackThenPump(shared, state, waiter),
    Effect.fail(saturated(state, waiter, delay, waiter.queuedAt))
  )
}

/**
 * A caller that must queue: refused now when the wait foreseen cannot end by its deadline (with how long it would
 * take, rather than at the deadline); otherwise told its place when it has to wait, and queued for the pump. Only
 * the wait itself is interruptible: interrupted there, it leaves the queue (or, admitted meanwhile, gives its
 * permit and reservation back).
 */
const queue = <A, E, R>(
  shared: Shared,
  state: KeyState,
  waiter: Waiter,
  arrival: ProviderRateLimiter.Queued,
  restore: Restore,
  then: Then<A, E, R>
): Effect.Effect<A, E | Errors.RateLimitError, R> => {
  const expected = arrival.expectedWaitMs
  if (expected > 0 && waiter.queuedAt + expected > waiter.deadline) {
    return Effect.fail(saturated(state, waiter, expected, waiter.queuedAt))
  }
  const tellOnArrival = waiter.onQueued !== undefined && (expected > 0 || state.permitsHeld >= state.permits)
  // No canceler: `Effect.async` would wrap the wait in `onInterrupt` (a mask and two handlers held by every queued
  // caller). Interrupted, the wait fails, and the handler below, in the caller's mask, leaves the queue.
  const verdict = Effect.async<number, Errors.RateLimitError>((resume) => {
    waiter.resume = resume
    // Told by the pump's fiber, once it is in the queue: a slow callback does not let later arrivals pass it.
    if (tellOnArrival) state.tells.push([waiter, arrival])
    enqueue(shared, state, waiter)
  })
  return waitThenDeliver(shared, state, waiter, verdict, restore, then)
}

/**
 * A wait of the caller, interruptible, then its way on with the wait it ends with (see `deliverAfter`); refused
 * (gone already) or interrupted, it ends its way through the key (it leaves the queue, or gives back what it was
 * admitted with).
 */
const waitThenDeliver = <A, E, R>(
  shared: Shared,
  state: KeyState,
  waiter: Waiter,
  wait: Effect.Effect<number, Errors.RateLimitError>,
  restore: Restore,
  then: Then<A, E, R>
): Effect.Effect<A, E | Errors.RateLimitError, R> =>
  Effect.matchCauseEffect(
    restore(wait),
    handlers(
      (cause) => Effect.zipRight(waiter.release, Effect.failCause(cause)),
      (delay) => deliverAfter(shared, state, waiter, delay, restore, then)
    )
  )

/**
 * The handlers of `Effect.matchCauseEffect`, given as arguments rather than written as object members: the
 * TypeScript runner of the tests and benchmarks (tsx, with esbuild's `keepNames`) names every function written as
 * an object member with `Object.defineProperty` each time it is made, here on every admission (compiled code does
 * not). As arguments they are plain closures, sharing their scope as they would anyway.
 */
export const handlers = <E, A, A2, E2, R2, A3, E3, R3>(
  onFailure: (cause: Cause.Cause<E>) => Effect.Effect<A2, E2, R2>,
  onSuccess: (a: A) => Effect.Effect<A3, E3, R3>
) => ({ onFailure, onSuccess })

/**
 * An admitted caller: the wait its reservation implies (told first, when it listens; a provider 429 meanwhile puts
 * it back in the queue, see `sleepUntil`), then the gate (a pause it did not sleep through, another instance's,
 * holds it until its end, re-read on waking: a later 429 may extend it, unless that is longer than the caller may
 * wait), then its `Admission`, with the release of its permit. Interrupted or refused while it waits, it gives its
 * permit and its reservation back. (Already in the caller's mask: a handler of the wait's
 * failure, not `onExit`, which would mask again.)
 */
const deliverAfter = <A, E, R>(
  shared: Shared,
  state: KeyState,
  waiter: Waiter,
  delay: number,
  restore: Restore,
  then: Then<A, E, R>
): Effect.Effect<A, E | Errors.RateLimitError, R> => {
  if (delay > 0) {
    // Asleep since its admission (see `sleepUntil`): the key's timer wakes it, or a 429 puts it back in the queue.
    const wait = waitThenDeliver(shared, state, waiter, nextVerdict(waiter), restore, then)
    if (waiter.onQueued === undefined) return wait
    return Effect.matchCauseEffect(
      restore(waiter.onQueued({ place: 1, expectedWaitMs: delay })),
      handlers((cause) => Effect.zipRight(waiter.release, Effect.failCause(cause)), () => wait)
    )
  }
  // Put back in the queue by a 429 before its caller ran (and perhaps admitted again since): the pump's next verdict.
  if (waiter.status === "waiting" || waiter.verdict !== undefined) {
    return waitThenDeliver(shared, state, waiter, nextVerdict(waiter), restore, then)
  }
  state.sleeping.delete(waiter)
  const pausedFor = state.pausedUntil - shared.clock.unsafeCurrentTimeMillis()
  if (pausedFor <= nanosecond) return deliver(shared, state, waiter, then)
  if (pauseRefuses(state, pausedFor, waiter.maxPause, waiter.deadline)) {
    return Effect.zipRight(waiter.release, Effect.fail(pausedTooLong(state, waiter.target, pausedFor)))
  }
  return waitThenDeliver(shared, state, waiter, Effect.as(Effect.sleep(pausedFor), 0), restore, then)
}

/**
 * An admitted waiter sleeps the wait its reservation implies, until `at`, from its admission (before its caller
 * runs again, so that a 429 meanwhile finds it): the key's timer wakes it (a verdict of no more wait), or a provider
 * 429 gives its reservation back and puts it back at the head of the queue, where it waits for the pump's verdict
 * again (see `requeueSleepers`).
 */
const sleepUntil = (state: KeyState, waiter: Waiter, at: number) => {
  const wake: Alarm = { at, seq: state.alarmSeq++, waiter, kind: "wake" }
  waiter.wake = wake
  state.sleeping.add(waiter)
  state.alarms.push(wake)
}

/** The pump's verdict for a waiter: to its caller at once when it awaits one, else kept until it does. */
const resumeWith = (waiter: Waiter, verdict: Effect.Effect<number, Errors.RateLimitError>) => {
  const resume = waiter.resume
  if (resume === undefined) {
    waiter.verdict = verdict
    return
  }
  waiter.resume = undefined
  resume(verdict)
}

/** The pump's next verdict for the caller's waiter (one it was given already, at once). */
const nextVerdict = (waiter: Waiter): Effect.Effect<number, Errors.RateLimitError> =>
  Effect.async((resume) => {
    const verdict = waiter.verdict
    if (verdict === undefined) waiter.resume = resume
    else {
      waiter.verdict = undefined
      resume(verdict)
    }
  })

/**
 * The caller holds its admission now: its wait is recorded (with the fiber's metric tags, as `Metric.update` would
 * take them), and its `Admission` made.
 */
const deliver = <A, E, R>(
  shared: Shared,
  state: KeyState,
  waiter: Waiter,
  then: Then<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    waiter.status = "delivered"
    changeQueued(state, -1)
    state.inFlight++
    state.waitTimeHistogram.unsafeUpdate(
      shared.clock.unsafeCurrentTimeMillis() - waiter.queuedAt,
      fiber.getFiberRef(FiberRef.currentMetricLabels)
    )
    return then({
      admission: {
        reconcile: reconcileWith(shared, state, waiter),
        cancel: Effect.suspend(() =>
          Effect.zipRight(giveBack(shared, state, waiter), Effect.sync(() => gaveBack(shared, state)))
        )
      },
      release: waiter.release
    })
  })

/**
 * Ends a caller's way through the key, from whichever state it is in, once: queued, it leaves the queue;
 * admitted, it gives its permit and its reservation back; delivered (its call over), it gives its permit back.
 */
const release = (shared: Shared, state: KeyState, waiter: Waiter): Effect.Effect<void> =>
  Effect.suspend(() => {
    const status = waiter.status
    switch (status) {
      case "waiting": {
        leaveQueue(state, waiter, "gone")
        changeQueued(state, -1)
        pump(shared, state)
        return Effect.void
      }
      case "delivered": {
        waiter.status = "gone"
        state.inFlight--
        const held = shared.clock.unsafeCurrentTimeMillis() - waiter.admittedAt
        state.meanHoldMillis = state.meanHoldMillis === 0 ? held : 0.8 * state.meanHoldMillis + 0.2 * held
        holdPermit(state, waiter, -1)
        pump(shared, state)
        return Effect.void
      }
      case "admitted": {
        const local = shared.buckets.local
        const now = shared.clock.unsafeCurrentTimeMillis()
        const behind = local === undefined ? [] : sleepersBehind(state, waiter, now)
        // Never used for a call: says nothing of how long calls hold a permit.
        stopSleeping(state, waiter)
        waiter.status = "gone"
        changeQueued(state, -1)
        holdPermit(state, waiter, -1)
        if (local === undefined || behind.length === 0) return giveBackThenPump(shared, state, waiter)
        giveBackLocally(local, state, waiter, now)
        moveUp(local, state, behind, now)
        pump(shared, state)
        return Effect.void
      }
      default:
        return Effect.void
    }
  })

/** `queued` changes: the gauge of waiting requests with it. */
const changeQueued = (state: KeyState, by: 1 | -1) => {
  state.queued += by
  state.depthGauge.unsafeModify(by, [])
}

const enqueue = (shared: Shared, state: KeyState, waiter: Waiter) => {
  waiter.status = "waiting"
  if (waiter.lane === "interactive") {
    waiter.slot = state.queue.push(waiter) - 1
    state.interactiveOrder.take(waiter.slot)
  } else {
    waiter.slot = state.batchQueue.push(waiter) - 1
    state.batchOrder.take(waiter.slot)
  }
  changeQueued(state, 1)
  addPending(state, waiter, 1)
  pushAlarm(state, waiter, waiter.deadline, "deadline")
  if (waiter.onQueued !== undefined) pushAlarm(state, waiter, waiter.queuedAt + queuedUpdateEveryMillis, "tell")
  pump(shared, state)
}

const pushAlarm = (state: KeyState, waiter: Waiter, at: number, kind: Alarm["kind"]) =>
  state.alarms.push({ at, seq: state.alarmSeq++, waiter, kind })

/** A waiter leaves the queue (its reservation no longer pending); the front of the queue skips those gone. */
const leaveQueue = (state: KeyState, waiter: Waiter, status: "admitted" | "gone") => {
  waiter.status = status
  addPending(state, waiter, -1)
  if (waiter.lane === "interactive") {
    state.interactiveOrder.leave(waiter.slot)
    while (state.queueHead < state.queue.length && state.queue[state.queueHead]!.status !== "waiting") {
      state.queueHead++
    }
    // Compacted once the gone part is most of the array: amortized O(1) per waiter.
    if (state.queueHead > 1_024 && state.queueHead * 2 > state.queue.length) {
      state.queue = state.queue.slice(state.queueHead)
      state.queueHead = 0
      renumber(state.queue, state.interactiveOrder)
    }
    return
  }
  state.batchOrder.leave(waiter.slot)
  while (
    state.batchQueueHead < state.batchQueue.length && state.batchQueue[state.batchQueueHead]!.status !== "waiting"
  ) {
    state.batchQueueHead++
  }
  if (state.batchQueueHead > 1_024 && state.batchQueueHead * 2 > state.batchQueue.length) {
    state.batchQueue = state.batchQueue.slice(state.batchQueueHead)
    state.batchQueueHead = 0
    renumber(state.batchQueue, state.batchOrder)
  }
}

/** A lane's queue whose array changed (its front dropped, members put back at its head): slots as they are now. */
const renumber = (queue: ReadonlyArray<Waiter>, order: QueueOrder.QueueOrder) => {
  for (let slot = 0; slot < queue.length; slot++) queue[slot]!.slot = slot
  order.rebuild(queue.length, (slot) => queue[slot]!.status === "waiting")
}

/** A waiter arriving in a lane: behind every waiter of its lane, a batch one behind every interactive one. */
const arrivalPlace = (state: KeyState, lane: Lane): number =>
  (lane === "interactive" ? state.interactiveOrder.size : state.interactiveOrder.size + state.batchOrder.size) + 1

/**
 * A waiter's place in the queue now: behind those of its lane still waiting ahead of it, a batch one behind every
 * interactive one.
 */
const placeOf = (state: KeyState, waiter: Waiter): number =>
  waiter.lane === "interactive"
    ? state.interactiveOrder.before(waiter.slot) + 1
    : state.interactiveOrder.size + state.batchOrder.before(waiter.slot) + 1

/** The first interactive waiter still waiting. */
const interactiveHead = (state: KeyState): Waiter | undefined => state.queue[state.queueHead]

/** The first waiter still waiting: interactive ones go before batch ones. */
const headOf = (state: KeyState): Waiter | undefined =>
  state.queue[state.queueHead] ?? state.batchQueue[state.batchQueueHead]

/** Admits a waiter: a permit is its, and the wait its reservation implies. */
const admitWaiter = (state: KeyState, waiter: Waiter, delay: number, now: number) => {
  leaveQueue(state, waiter, "admitted")
  holdPermit(state, waiter, 1)
  waiter.admittedAt = now
  // Asleep until its caller runs again, with no wait to sleep: a 429 before then puts it back in the queue too.
  if (delay > 0) sleepUntil(state, waiter, now + delay)
  else state.sleeping.add(waiter)
  resumeWith(waiter, Effect.succeed(delay))
}

/** Refuses a waiter, with why. */
const refuse = (state: KeyState, waiter: Waiter, error: Errors.RateLimitError) => {
  leaveQueue(state, waiter, "gone")
  changeQueued(state, -1)
  resumeWith(waiter, Effect.fail(error))
}

/** How often a caller queued for a permit hears its place again. */
const queuedUpdateEveryMillis = 5_000

/**
 * Drives the key after anything changed (an arrival, a release, a 429, the timer): admits the head of the queue
 * while a permit is free and the gate is open (one reservation across every bucket, in arrival order), refuses
 * waiters at their deadlines, tells queued waiters their place every 5 seconds, and sets the key's one timer to the
 * next moment it must look again. Synchronous; a call from inside it only makes it look again.
 */
const pump = (shared: Shared, state: KeyState): void => {
  if (state.pumping) {
    state.dirty = true
    return
  }
  state.pumping = true
  try {
    do {
      state.dirty = false
      step(shared, state, shared.clock.unsafeCurrentTimeMillis())
    } while (state.dirty)
  } finally {
    state.pumping = false
  }
  if (state.tells.length > 0) {
    const tells = state.tells
    state.tells = []
    // The callers' callbacks run in a fiber of their own: a slow one does not hold the key.
    shared.runDaemon(Effect.forEach(tells, ([waiter, queued]) =>
      // A failure or defect in a caller's callback is logged; it must not stop the others.
      Effect.catchAllCause(waiter.onQueued!(queued), (cause) => Effect.logWarning("onQueued failed", cause)), {
      discard: true
    }))
  }
}

/** One look at the key: what is due, then the head of the queue; `dirty` when it must look again at once. */
const step = (shared: Shared, state: KeyState, now: number): void => {
  LimiterLearning.climbIfDue(shared, state, now)
  ringDue(shared, state, now)
  const head = state.reserving ? undefined : headOf(state)
  if (head !== undefined && now + nanosecond < state.pausedUntil) {
    if (pauseRefuses(state, state.pausedUntil - now, head.maxPause, head.deadline)) {
      refuse(state, head, pausedTooLong(state, head.target, state.pausedUntil - now))
      state.dirty = true
      return
    }
    setAlarm(shared, state, state.pausedUntil, now)
  } else if (head !== undefined && mayTakePermit(state, head)) {
    // A batch head waits until the buckets hold what it takes (its timer then), never reserving ahead.
    const wait = head.lane === "batch" ? untilFits(shared, state, head.estimate, now) : 0
    if (wait === 0) {
      admitHead(shared, state, head, now)
      return
    }
    setAlarm(shared, state, now + wait, now)
  }
  const next = nextAlarm(state)
  if (next !== undefined) setAlarm(shared, state, next, now)
  else if (state.ringing) {
    // Nobody waits any more: the timer, ringing now, ends.
    state.alarmAt = undefined
  } else if (state.alarmFiber !== undefined) {
    // Nobody waits any more: the timer set for them goes.
    state.alarmFiber.unsafeInterruptAsFork(FiberId.none)
    state.alarmFiber = undefined
    state.alarmAt = undefined
  }
}

/**
 * The head of the queue takes a free permit: its reservation is made, then it is admitted with the wait that
 * implies, or refused when that ends after its deadline. With a remote store the reservation is a fiber of the
 * limiter's; the queue waits for it.
 */
const admitHead = (shared: Shared, state: KeyState, head: Waiter, now: number): void => {
  const local = shared.buckets.local
  if (local !== undefined) {
    const delay = reserveLocally(local, state, head, now)
    if (!headVerdict(state, head, delay, now)) giveBackLocally(local, state, head, now)
    state.dirty = true
    return
  }
  state.reserving = true
  const pauses = state.pauses
  shared.runDaemon(
    Effect.flatMap(reserveInStore(shared, state, head), (delay) => {
      // Interrupted while the store answered, or refused: the reservation goes back. Overtaken by a provider 429 (made
      // against budget the provider has not got), it goes back too, and the head, still queued, reserves again after
      // the pause.
      const admitted = head.status === "waiting" && state.pauses === pauses &&
        headVerdict(state, head, delay, shared.clock.unsafeCurrentTimeMillis())
      return admitted ? Effect.void : giveBack(shared, state, head)
    }).pipe(Effect.ensuring(Effect.sync(() => endReservation(shared, state))))
  )
}

/**
 * The reservation under way is over, given back too when it was: a 429's drain of the store that waited for it goes
 * on (it counts the store as the reservation left it), and the key is driven.
 */
const endReservation = (shared: Shared, state: KeyState) => {
  state.reserving = false
  if (state.afterReserving.length > 0) {
    const waiting = state.afterReserving
    state.afterReserving = []
    for (const resume of waiting) resume()
  }
  pump(shared, state)
}

/** Once no reservation is under way with the store. */
const untilNotReserving = (state: KeyState): Effect.Effect<void> =>
  state.reserving
    ? Effect.async<void>((resume) => {
      state.afterReserving.push(() => resume(Effect.void))
    })
    : Effect.void

/** The head, its reservation made at `at`: admitted with the wait it implies, or refused when that ends too late. */
const headVerdict = (state: KeyState, head: Waiter, delay: number, at: number): boolean => {
  if (delay > 0 && at + delay > head.deadline) {
    refuse(state, head, saturated(state, head, delay, at))
    return false
  }
  admitWaiter(state, head, delay, at)
  return true
}

/** The earliest alarm still due (those of waiters gone, or a sleep cut short, are dropped as they surface). */
const nextAlarm = (state: KeyState): number | undefined => {
  for (let top = state.alarms.peek(); top !== undefined; top = state.alarms.peek()) {
    if (isLive(top)) return top.at
    state.alarms.pop()
  }
  return undefined
}

const isLive = (alarm: Alarm): boolean =>
  alarm.kind === "wake" ? alarm.waiter.wake === alarm : alarm.waiter.status === "waiting"

/** An admitted waiter's sleep ends (woken, put back in the queue, or gone): its alarm is stale. */
const stopSleeping = (state: KeyState, waiter: Waiter) => {
  waiter.wake = undefined
  state.sleeping.delete(waiter)
}

/**
 * A nanosecond, in milliseconds: a moment is reached within it. A sleep of a fractional millisecond is rounded to
 * whole nanoseconds (`Duration`), so a sleeper can wake a hair before a fractional moment, and a sleep of less than
 * a nanosecond ends at once: a pump looking for that moment would set its timer again without end.
 */
const nanosecond = 1e-6

/**
 * The key's one timer, set to ring at `at` unless it already rings sooner. Set while it rings, it sleeps on in the
 * same fiber (admissions paced by the budget wake one after another: a fiber each would cost more than their pump).
 */
const setAlarm = (shared: Shared, state: KeyState, at: number, now: number): void => {
  if (state.alarmAt !== undefined && state.alarmAt <= at) return
  state.alarmAt = at
  if (state.ringing) return
  state.alarmFiber?.unsafeInterruptAsFork(FiberId.none)
  state.alarmFiber = shared.runDaemon(ringAfter(shared, state, at - now))
}

/** The timer: sleeps `millis`, drives the key, and sleeps again until the next moment the pump set, if any. */
const ringAfter = (shared: Shared, state: KeyState, millis: number): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.sleep(Math.max(millis, nanosecond)),
    Effect.suspend(() => {
      state.alarmAt = undefined
      state.ringing = true
      try {
        pump(shared, state)
      } finally {
        state.ringing = false
      }
      const next = state.alarmAt
      if (next === undefined) {
        state.alarmFiber = undefined
        return Effect.void
      }
      return ringAfter(shared, state, next - shared.clock.unsafeCurrentTimeMillis())
    })
  )

/**
 * The alarms due at `now`: waiters past their deadline are refused, queued ones hear their place, admitted ones
 * wake.
 */
const ringDue = (shared: Shared, state: KeyState, now: number): void => {
  for (let top = state.alarms.peek(); top !== undefined && top.at <= now + nanosecond; top = state.alarms.peek()) {
    state.alarms.pop()
    const waiter = top.waiter
    if (!isLive(top)) continue
    if (top.kind === "wake") {
      stopSleeping(state, waiter)
      resumeWith(waiter, Effect.succeed(0))
      continue
    }
    if (top.kind === "deadline") {
      refuse(state, waiter, saturated(state, waiter, placeEstimate(shared, state, waiter, now).expectedWaitMs, now))
      continue
    }
    pushAlarm(state, waiter, top.at + queuedUpdateEveryMillis, "tell")
    // Told only while it waits for a permit (a pause's wait is not what the estimate foresees).
    if (state.permitsHeld >= state.permits) state.tells.push([waiter, placeEstimate(shared, state, waiter, now)])
  }
}

/** A waiter's place now and the wait foreseen from it. */
const placeEstimate = (shared: Shared, state: KeyState, waiter: Waiter, now: number): ProviderRateLimiter.Queued => {
  const place = placeOf(state, waiter)
  const ahead = waiter.lane === "interactive" ? state.pendingInteractive : state.pending
  // What the others pending take (the waiter's own is counted once, as its own), the share of them ahead of it.
  const others = Math.max(1, ahead.requests - 1)
  const othersPending: Pending = {
    requests: ahead.requests - 1,
    inputTokens: ahead.inputTokens - waiter.estimate.inputTokens,
    outputTokens: ahead.outputTokens - waiter.estimate.outputTokens
  }
  return {
    place,
    expectedWaitMs: expectedWait(
      state,
      waiter.estimate,
      { place, aheadShare: Math.min(1, (place - 1) / others), lane: waiter.lane, ahead: othersPending },
      levelNow(shared, state, now)
    )
  }
}

/**
 * One reservation across every bucket of the key, in memory: the wait it implies (0 when the budget is there).
 * The buckets of `bucketsOf`, in its order, without building its list (this runs on every admission).
 */
const reserveLocally = (local: TokenBuckets.LocalBuckets, state: KeyState, waiter: Waiter, now: number): number => {
  LimiterLearning.remember(state, waiter, now)
  return takeLocally(local, state, waiter.estimate, now)
}

/**
 * What a request takes from every bucket of the key, in memory: the wait it implies. With `by` -1, what it took is put
 * back as it was, even above a bucket's limit (see `moveUp`; a take of more than a limit took nothing).
 */
const takeLocally = (
  local: TokenBuckets.LocalBuckets,
  state: KeyState,
  estimate: Estimate,
  now: number,
  by: 1 | -1 = 1
): number => {
  const { quota, storeKeys } = state
  const take = (key: string, limit: number, tokens: number) =>
    by === 1
      ? local.take(key, limit, tokens, now).delay
      : tokens > limit
      ? 0
      : local.take(key, limit, -tokens, now).delay
  let delay = take(storeKeys.rpm!, quota.requestsPerMinute, 1)
  if (quota.tokensPerMinute !== undefined) {
    delay = Math.max(delay, take(storeKeys.tpm!, quota.tokensPerMinute, estimate.inputTokens + estimate.outputTokens))
  }
  if (quota.inputTokensPerMinute !== undefined) {
    delay = Math.max(delay, take(storeKeys.itpm!, quota.inputTokensPerMinute, estimate.inputTokens))
  }
  if (quota.outputTokensPerMinute !== undefined) {
    delay = Math.max(delay, take(storeKeys.otpm!, quota.outputTokensPerMinute, estimate.outputTokens))
  }
  return delay
}

const giveBackLocally = (local: TokenBuckets.LocalBuckets, state: KeyState, waiter: Waiter, now: number) => {
  LimiterLearning.forgetReservation(waiter)
  refundLocally(local, state, waiter.estimate, now)
}

/** What a request took, back into every bucket of the key, in memory. */
const refundLocally = (local: TokenBuckets.LocalBuckets, state: KeyState, estimate: Estimate, now: number) => {
  const { quota, storeKeys } = state
  local.refund(storeKeys.rpm!, quota.requestsPerMinute, 1, now)
  if (quota.tokensPerMinute !== undefined) {
    local.refund(storeKeys.tpm!, quota.tokensPerMinute, estimate.inputTokens + estimate.outputTokens, now)
  }
  if (quota.inputTokensPerMinute !== undefined) {
    local.refund(storeKeys.itpm!, quota.inputTokensPerMinute, estimate.inputTokens, now)
  }
  if (quota.outputTokensPerMinute !== undefined) {
    local.refund(storeKeys.otpm!, quota.outputTokensPerMinute, estimate.outputTokens, now)
  }
}

/** One reservation across every bucket of the key, in a remote store: what each holds is remembered. */
const reserveInStore = (shared: Shared, state: KeyState, waiter: Waiter): Effect.Effect<number> =>
  Effect.suspend(() => {
    LimiterLearning.remember(state, waiter, shared.clock.unsafeCurrentTimeMillis())
    return reserveAll(shared, state, waiter.estimate)
  })

const reserveAll = (shared: Shared, state: KeyState, estimate: Estimate): Effect.Effect<number> =>
  Effect.map(
    Effect.forEach(bucketsOf(state.quota, estimate), (b) =>
      Effect.map(shared.buckets.take(state.storeKeys[b.name]!, b.limit, b.tokens), (taken) => {
        state.known[b.name] = { remaining: taken.remaining, at: shared.clock.unsafeCurrentTimeMillis() }
        return taken.delay
      })),
    (delays) =>
      Math.max(0, ...delays)
  )

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

const addPending = (state: KeyState, waiter: Waiter, sign: 1 | -1) => {
  addTo(state.pending, waiter.estimate, sign)
  if (waiter.lane === "interactive") addTo(state.pendingInteractive, waiter.estimate, sign)
}

const addTo = (pending: Pending, estimate: Estimate, sign: 1 | -1) => {
  pending.requests += sign
  pending.inputTokens += sign * estimate.inputTokens
  pending.outputTokens += sign * estimate.outputTokens
}

/**
 * What a reconciled call used, as the provider counts it against the limits in force: its prompt as counted; its
 * output as written where an output limit counts what was written (Anthropic), else as reserved (OpenAI counts the
 * max output).
 */
const countReservation = (state: KeyState, waiter: Waiter, usage: Estimate) => {
  const reserved = waiter.reserved
  if (reserved === undefined || reserved.requests === 0) return
  reserved.inputTokens = usage.inputTokens
  if (state.quota.outputTokensPerMinute !== undefined) reserved.outputTokens = usage.outputTokens
}

/**
 * Replaces a reservation with what the provider reported: what was not used goes back, what went over is
 * charged. OpenAI keeps the max output it counted at admission, so its tokens bucket reconciles the prompt only;
 * Anthropic corrects its output bucket to what was written.
 */
const reconcileWith = (shared: Shared, state: KeyState, waiter: Waiter) => (usage: Estimate): Effect.Effect<void> => {
  const reserved = waiter.estimate
  countReservation(state, waiter, usage)
  const wanted = bucketsOf(state.quota, reserved)
  let refunded = false
  const settled = Effect.forEach(
    bucketsOf(state.quota, usage),
    (b, i) => {
      const used = b.name === "tpm" ? usage.inputTokens + reserved.outputTokens : b.tokens
      const held = wanted[i]!.tokens
      const key = state.storeKeys[b.name]!
      return used > held
        ? Effect.asVoid(shared.buckets.take(key, b.limit, used - held))
        : used < held
        ? Effect.zipRight(Effect.sync(() => (refunded = true)), shared.buckets.refund(key, b.limit, held - used))
        : Effect.void
    },
    { discard: true }
  )
  return Effect.zipRight(settled, Effect.sync(() => refunded && gaveBack(shared, state)))
}

/** Budget came back to the key's buckets in memory: the callers sleeping until their turns move up (`moveUp`). */
const gaveBack = (shared: Shared, state: KeyState) => {
  const local = shared.buckets.local
  if (local === undefined) return
  const now = shared.clock.unsafeCurrentTimeMillis()
  const sleepers = sleepersBehind(state, undefined, now)
  if (sleepers.length > 0) moveUp(local, state, sleepers, now)
}

/**
 * A provider 429: the key's gate closes for every caller until `millis` from now. With `adaptive`, the limit it
 * reached (`limit`, when the provider named it; else every limit) comes down by a tenth, with what its bucket
 * holds, once per episode: the refusals of calls already in flight when the first came are the same episode; not
 * for the first 429 in a minute that asks for less than one request's spacing at that limit
 * (`LimiterLearning.atTheEdge`).
 */
export const pauseKey = (
  shared: Shared,
  state: KeyState,
  millis: number,
  limit?: Errors.RateLimitKind
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const now = shared.clock.unsafeCurrentTimeMillis()
    const pausedUntil = state.pausedUntil
    const alreadyPaused = pausedUntil > now
    state.pausedUntil = Math.max(pausedUntil, now + millis)
    state.pauses++
    const reached = LimiterLearning.reachedLimits(state.quota, limit)
    // The episode's limits, and whether it cuts them, are settled before anything below yields: a 429 landing
    // meanwhile is of this episode and reads them (read later, it found the last episode's).
    let added = reached
    if (alreadyPaused) {
      // The same episode: a limit cut already is not cut again. A limit it had not reached yet is cut as the
      // episode's first was (or not), and its bucket emptied for the pause.
      added = reached.filter((field) => !state.pauseLimits.includes(field))
      state.pauseLimits = [...state.pauseLimits, ...added]
    } else {
      // One 429 at the edge a minute passes; another within the minute says the limits are too high after all.
      const passes = LimiterLearning.atTheEdge(state, reached, LimiterLearning.usedInLastMinute(state, now), millis) &&
        now - state.edgePassedAt >= LimiterLearning.windowMillis
      if (passes) state.edgePassedAt = now
      state.pauseLimits = reached
      state.pauseCut = shared.adaptive && !passes
    }
    const cuts = state.pauseCut && added.length > 0
    yield* requeueSleepers(shared, state, now)
    // The head of the queue may now be paused past what it waits: the pump refuses it at once.
    pump(shared, state)
    // A reservation under way is given back (see `reserveNow`, `admitHead`) before the store is read and drained: read
    // before it ends, the drain would count it, and the give-back would then refill the bucket by as much.
    yield* untilNotReserving(state)
    const used = LimiterLearning.usedInLastMinute(state, now)
    // The provider refused while the local budget allowed: the limits in force are too high.
    if (cuts) cutLimits(state, added, used, now)
    if (alreadyPaused) {
      if (cuts) {
        shared.tell({ key: state.key, pausedForMillis: millis, limits: LimiterLearning.limitsOf(state.quota) })
        yield* lowerBuckets(shared, state, added)
      }
      // A pause made longer empties every bucket of the episode again for its new end (through the extension they
      // would refill into a burst).
      const extended = state.pausedUntil > pausedUntil
      if (extended || added.length > 0) {
        yield* emptyForPause(shared, state, extended ? state.pauseLimits : added, state.pausedUntil - now, used)
      }
      return
    }
    // Before the store calls: the others close their gates while this one is still emptying the buckets.
    shared.tell({
      key: state.key,
      pausedForMillis: millis,
      limits: cuts ? LimiterLearning.limitsOf(state.quota) : undefined
    })
    if (cuts) yield* lowerBuckets(shared, state, reached)
    yield* emptyForPause(shared, state, reached, millis, used)
  })

/** The limits `fields` a tenth lower, or down to what the last minute used of them (see `LimiterLearning.cut`). */
const cutLimits = (
  state: KeyState,
  fields: ReadonlyArray<LimiterLearning.QuotaField>,
  used: ReturnType<typeof LimiterLearning.usedInLastMinute>,
  now: number
) => {
  let quota = state.quota
  for (const field of fields) {
    const inForce = quota[field]
    if (inForce !== undefined) {
      quota = { ...quota, [field]: LimiterLearning.cut(inForce, LimiterLearning.usedOf(used, field)) }
    }
  }
  state.quota = quota
  state.limitsChangedAt = now
}

/** The buckets of the limits `fields`, brought down to their limits in force (never above a lowered limit). */
const lowerBuckets = (
  shared: Shared,
  state: KeyState,
  fields: ReadonlyArray<LimiterLearning.QuotaField>
): Effect.Effect<void> =>
  Effect.forEach(
    bucketsOf(state.quota, nothing).filter((b) => fields.includes(quotaField[b.name]!)),
    (b) => shared.buckets.lowerTo(state.storeKeys[b.name]!, b.limit, b.limit),
    { discard: true }
  )

/**
 * A provider 429 found admitted callers still sleeping their reservations' waits: reservations made against budget
 * the provider says it has not got. Each gives its reservation and its permit back and goes back to the head of its
 * lane's queue, in the order they were admitted, ahead of those that came after them; at the pause's end they
 * reserve again, at the limits' pace. (Left asleep, they all woke at the pause's end and went together, in a burst
 * into the provider's empty bucket.) Those the pause is longer than they may wait are refused at once instead.
 */
const requeueSleepers = (shared: Shared, state: KeyState, now: number): Effect.Effect<void> => {
  if (state.sleeping.size === 0) return Effect.void
  const sleepers = [...state.sleeping]
  const interactive: Array<Waiter> = []
  const batch: Array<Waiter> = []
  const pausedFor = state.pausedUntil - now
  for (const waiter of sleepers) {
    stopSleeping(state, waiter)
    holdPermit(state, waiter, -1)
    if (pauseRefuses(state, pausedFor, waiter.maxPause, waiter.deadline)) {
      // Paused longer than it may wait: refused now, wherever it would be in the queue.
      waiter.status = "gone"
      changeQueued(state, -1)
      resumeWith(waiter, Effect.fail(pausedTooLong(state, waiter.target, pausedFor)))
      continue
    }
    waiter.status = "waiting"
    // A verdict kept for it (admitted while it ran its `onQueued`) is no longer what the pump says.
    waiter.verdict = undefined
    addPending(state, waiter, 1)
    pushAlarm(state, waiter, waiter.deadline, "deadline")
    if (waiter.lane === "interactive") interactive.push(waiter)
    else batch.push(waiter)
  }
  // The queues without their fronts, where those admitted from them still are (as they left): each waiter once.
  if (interactive.length > 0) {
    state.queue = [...interactive, ...state.queue.slice(state.queueHead)]
    state.queueHead = 0
    renumber(state.queue, state.interactiveOrder)
  }
  if (batch.length > 0) {
    state.batchQueue = [...batch, ...state.batchQueue.slice(state.batchQueueHead)]
    state.batchQueueHead = 0
    renumber(state.batchQueue, state.batchOrder)
  }
  const local = shared.buckets.local
  if (local !== undefined) {
    for (const waiter of sleepers) giveBackLocally(local, state, waiter, now)
    return Effect.void
  }
  return Effect.forEach(sleepers, (waiter) => giveBack(shared, state, waiter), { discard: true })
}

/**
 * The callers admitted after `waiter` (every one without it) and still sleeping their reservations' waits at `now`:
 * reservations made behind its (at most the key's permits, which they hold). None while the key is paused: those
 * sleep on to the pause's end (see `hear`), where the buckets' levels are not theirs to change.
 */
const sleepersBehind = (state: KeyState, waiter: Waiter | undefined, now: number): ReadonlyArray<Waiter> => {
  if (now + nanosecond < state.pausedUntil || state.sleeping.size === 0) return []
  const behind: Array<Waiter> = []
  let after = waiter === undefined
  for (const sleeper of state.sleeping) {
    if (sleeper === waiter) after = true
    else if (after && sleeper.wake !== undefined && sleeper.wake.at > now + nanosecond) behind.push(sleeper)
  }
  return behind
}

/**
 * In memory, budget given back (a caller gone, a call that used less than it reserved) reaches the callers sleeping
 * until their turns, `sleepers` in the order they were admitted: each takes its tokens again and wakes at its new
 * turn when that is sooner (the buckets may have been charged since: a later turn could pass its deadline, and the
 * old one stays). Left asleep, they kept their turns, and a caller arriving after them reserved what came back and
 * went first. At most the key's permit holders; their reservations, as remembered, are the same.
 */
const moveUp = (local: TokenBuckets.LocalBuckets, state: KeyState, sleepers: ReadonlyArray<Waiter>, now: number) => {
  // Put back uncapped: each takes its tokens again at once, and a cap here would lose what the buckets refilled.
  for (const sleeper of sleepers) takeLocally(local, state, sleeper.estimate, now, -1)
  let moved = false
  for (const sleeper of sleepers) {
    const at = now + takeLocally(local, state, sleeper.estimate, now)
    if (at + nanosecond < sleeper.wake!.at) {
      sleepUntil(state, sleeper, at)
      moved = true
    }
  }
  // Each moved wake leaves its old alarm in the heap until its time: dropped here when they pile up.
  if (moved && state.alarms.size > 1_024 + 4 * (state.queued + state.sleeping.size)) state.alarms.retain(isLive)
}

/**
 * What another instance sharing the quota learnt from a 429 (see `QuotaSignals`): the key's gate closes for the
 * same pause, and limits it cut come down here too (each only ever lower: two instances cutting at once settle on
 * the lower). The buckets need nothing: the other instance emptied them in the store they share. A 429 of this
 * instance's own within the pause is then the same episode, and cuts nothing more. Callers admitted here and
 * sleeping their reservations' waits sleep on, to the pause's end: their reservations are in the store the other
 * instance emptied, and given back they would refill it.
 */
export const hear = (shared: Shared, state: KeyState, signal: QuotaSignals.Signal): void => {
  const now = shared.clock.unsafeCurrentTimeMillis()
  if (shared.adaptive && signal.limits !== undefined) {
    // Brought up to date first: a climb is due only while the gate is open.
    LimiterLearning.climbIfDue(shared, state, now)
    let quota = state.quota
    for (const field of LimiterLearning.quotaFields) {
      const theirs = signal.limits[field]
      const inForce = quota[field]
      if (theirs !== undefined && inForce !== undefined && theirs < inForce) quota = { ...quota, [field]: theirs }
    }
    if (quota !== state.quota) {
      state.quota = quota
      state.limitsChangedAt = now
    }
  }
  if (state.pausedUntil <= now || signal.limits !== undefined) {
    // Another instance's episode, or its cut within this one's: it cut and emptied what it reached; a 429 of this
    // one's within the pause cuts nothing more (and, making it longer, empties every bucket again).
    state.pauseLimits = LimiterLearning.quotaFields
  }
  state.pausedUntil = Math.max(state.pausedUntil, now + signal.pausedForMillis)
  pump(shared, state)
}

/**
 * A 429 says the provider has no budget left now in the limits it reached: each of their buckets is brought down so
 * that when the pause ends one request is there (in a token bucket, one of the last minute's mean size), as at the
 * provider (its retry-after is when its next request is), and is overdrawn for a pause longer than a request's
 * refill. Whoever reserves after the pause is spaced at the limit's pace rather than let through in a burst of a full
 * bucket (which met the provider's empty one: another 429, another cut, and limits spiralling down). When the 429
 * named no limit, every bucket comes down: a full token bucket let token-heavy calls through at once though the
 * requests one was empty. Over a shared store every instance waits about the pause, the buckets being where they all
 * look (the store holds no other shared state to keep a pause in).
 */
const emptyForPause = (
  shared: Shared,
  state: KeyState,
  reached: ReadonlyArray<LimiterLearning.QuotaField>,
  millis: number,
  used: ReturnType<typeof LimiterLearning.usedInLastMinute>
): Effect.Effect<void> => {
  const meanRequest: Estimate = used.requests === 0 ? nothing : {
    inputTokens: Math.ceil(used.inputTokens / used.requests),
    outputTokens: Math.ceil(used.outputTokens / used.requests)
  }
  return Effect.forEach(
    bucketsOf(state.quota, meanRequest),
    (b) =>
      b.tokens === 0 || !reached.includes(quotaField[b.name]!) ? Effect.void : drainTo(
        shared,
        state.storeKeys[b.name]!,
        b.limit,
        // A hundredth of its limit more in a token bucket: a store refills whole tokens at a fractional rate, and
        // can come a few short of the pause's worth; that little is no burst.
        b.name === "rpm" ? b.tokens : b.tokens + Math.ceil(b.limit / 100),
        millis
      ),
    { discard: true }
  )
}

/** A bucket brought down to hold `tokens` once `millis` have passed (overdrawn when they refill more). */
const drainTo = (shared: Shared, key: string, limit: number, tokens: number, millis: number): Effect.Effect<void> => {
  const atMost = tokens - Math.floor((limit * millis) / LimiterLearning.windowMillis)
  return Effect.flatMap(shared.buckets.level(key, limit), (level) =>
    Effect.gen(function*() {
      // A take of more than the limit takes nothing: in steps.
      for (let owed = level - atMost; owed > 0; owed -= limit) {
        yield* shared.buckets.take(key, limit, Math.min(owed, limit))
      }
    }))
}

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
      const inForce = state.quota[field]
      if (inForce === undefined) continue
      // The provider's own limit is trusted, above the one in force as well as below (its remaining count keeps
      // the bucket honest when others share the quota).
      const changed = shared.adaptive && report.limit !== undefined && report.limit !== inForce
      if (changed) state.quota = { ...state.quota, [field]: report.limit }
      if (shared.adaptive && report.limit !== undefined) state.reported[field] = report.limit
      const lowered = changed && report.limit! < inForce
      // Each look at a bucket is a store call (a round trip with Redis): only when something may come down.
      if (!lowered && report.remaining === undefined) continue
      const limit = state.quota[field]!
      yield* shared.buckets.lowerTo(state.storeKeys[bucket]!, limit, report.remaining ?? limit)
    }
  })

/**
 * Whether forgetting a key loses nothing its callers rely on: nobody has looked it up for a second (a caller that
 * just did may not have queued yet: its fiber may pause between the two), nobody holds, waits for or sleeps on it,
 * no timer, reservation or pause is under way, and its buckets are full again (in memory; over a remote store, as
 * the store last said, refilled since), as a new key's are. What it learnt (the last minute's reservations, its
 * input scale, limits cut by 429s or reported by the provider, how long calls hold a permit) goes with it: the
 * provider's next answers teach it again.
 */
export const forgettable = (shared: Shared, state: KeyState, now: number): boolean => {
  if (
    now - state.lookedUpAt < lookedUpGraceMillis || state.permitsHeld > 0 || state.queued > 0 ||
    state.sleeping.size > 0 ||
    state.inFlight > 0 || state.reserving || state.pumping || state.alarmFiber !== undefined ||
    state.tells.length > 0 || now < state.pausedUntil
  ) return false
  const local = shared.buckets.local
  for (const bucket of bucketsOf(state.quota, nothing)) {
    const full = local === undefined
      ? levelNow(shared, state, now)(bucket.name, bucket.limit) >= bucket.limit
      : local.full(state.storeKeys[bucket.name]!, bucket.limit, now)
    if (!full) return false
  }
  return true
}

/** How long after a caller looked a key up it is kept (see `forgettable`): far more than the steps to its queue. */
const lookedUpGraceMillis = 1_000

/**
 * How long a request arriving now would wait for admission on the key, in milliseconds: behind every waiter queued,
 * for the budgets and a permit, and past a 429's pause (an estimate, as for `onQueued`).
 */
export const waitForArrival = (shared: Shared, state: KeyState, estimate: Estimate, lane: Lane): number => {
  const now = shared.clock.unsafeCurrentTimeMillis()
  LimiterLearning.climbIfDue(shared, state, now)
  const place = arrivalPlace(state, lane)
  const wait = expectedWait(state, estimate, { place, aheadShare: 1, lane }, levelNow(shared, state, now))
  return Math.max(wait, state.pausedUntil - now)
}

export const snapshotOf = (shared: Shared, state: KeyState): Effect.Effect<KeySnapshot> =>
  Effect.suspend(() => {
    // The limits in force now, climbed back by the minutes since they were cut.
    LimiterLearning.climbIfDue(shared, state, shared.clock.unsafeCurrentTimeMillis())
    return snapshotNow(shared, state)
  })

const snapshotNow = (shared: Shared, state: KeyState): Effect.Effect<KeySnapshot> =>
  Effect.map(
    Effect.forEach(
      bucketsOf(state.quota, nothing),
      (b) =>
        Effect.map(
          shared.buckets.level(state.storeKeys[b.name]!, b.limit),
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

const quotaField: Readonly<Record<string, LimiterLearning.QuotaField>> = {
  rpm: "requestsPerMinute",
  tpm: "tokensPerMinute",
  itpm: "inputTokensPerMinute",
  otpm: "outputTokensPerMinute"
}
