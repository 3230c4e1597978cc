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
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import * as Errors from "../Errors.js"
import type * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import * as Metrics from "./metrics.js"
import * as MinHeap from "./minHeap.js"
import type * as TokenBuckets from "./tokenBuckets.js"
import * as Wire from "./wire.js"

type Quota = ProviderRateLimiter.Quota
type Estimate = ProviderRateLimiter.Estimate
type Target = ProviderRateLimiter.Target
type AdmitOptions = ProviderRateLimiter.AdmitOptions
type Admission = ProviderRateLimiter.Admission
type KeySnapshot = ProviderRateLimiter.KeySnapshot

/**
 * One caller waiting for admission to a key. It holds no fiber, timer or scope of its own: the key's driver admits
 * it (or refuses it) by calling `resume`.
 */
interface Waiter {
  readonly estimate: Estimate
  readonly target: Target
  readonly queuedAt: number
  readonly deadline: number
  readonly maxPause: number | undefined
  readonly onQueued: AdmitOptions["onQueued"]
  /** Its place on arrival, and how many waiters had left the front of the queue then (see `KeyState.served`). */
  readonly place: number
  readonly servedBefore: number
  status: "new" | "waiting" | "admitted" | "gone"
  resume: ((outcome: Effect.Effect<number, Errors.RateLimitError>) => void) | undefined
}

/** A moment the driver must act at: a waiter's deadline, or the next time it hears its place. */
interface Alarm {
  readonly at: number
  readonly seq: number
  readonly waiter: Waiter
  readonly kind: "deadline" | "tell"
}

/** The state of one key: its queue and permits, what waits and runs, the limits in force and the gate a 429 closed. */
export interface KeyState {
  readonly key: string
  quota: Quota
  /** Concurrency permits, and how many are taken (admitted and not yet released). */
  readonly permits: number
  permitsHeld: number
  /** Callers waiting: in the queue, or admitted and sleeping the wait their reservation implies. */
  queued: number
  inFlight: number
  pausedUntil: number
  /** What the waiters that have not reserved yet will take: they are ahead of whoever arrives now. */
  pending: { requests: number; inputTokens: number; outputTokens: number }
  /** Waiters that left the front of the queue (admitted or refused there) so far: how far the queue has moved. */
  served: number
  /** How long an admitted request holds its permit, on average (recent calls weigh most); 0 before the first. */
  meanHoldMillis: number
  /** The waiters in arrival order (`queueHead` is the first not yet gone; gone ones are skipped lazily). */
  queue: Array<Waiter>
  queueHead: number
  readonly alarms: MinHeap.MinHeap<Alarm>
  alarmSeq: number
  /** A caller is reserving on the uncontended path (see `reserveNow`): the driver waits for it. */
  reserving: boolean
  /** The driver: parked (with the callback that wakes it), or running (`dirty` when it must look again). */
  wakeDriver: (() => void) | undefined
  dirty: boolean
  /** The one timer of the key, and when it rings. */
  alarmAt: number | undefined
  alarmFiber: Fiber.RuntimeFiber<void> | undefined
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
  /**
   * Starts a key's driver in the limiter's own runtime (the one it was built in), so that the driver belongs to
   * the limiter, not to the caller that first used the key (nor to that caller's supervisor or interruption).
   */
  readonly runDriver: (driver: Effect.Effect<never>) => void
}

/** A key as it starts, its driver started and parked: its quota's permits, nothing queued, the gate open. */
export const makeKeyState = (shared: Shared, key: string, quota: Quota): KeyState => {
  const state: KeyState = {
    key,
    quota,
    permits: quota.maxConcurrent,
    permitsHeld: 0,
    queued: 0,
    inFlight: 0,
    pausedUntil: 0,
    pending: { requests: 0, inputTokens: 0, outputTokens: 0 },
    served: 0,
    meanHoldMillis: 0,
    queue: [],
    queueHead: 0,
    alarms: new MinHeap.MinHeap((a, b) => a.at < b.at || (a.at === b.at && a.seq < b.seq)),
    alarmSeq: 0,
    reserving: false,
    wakeDriver: undefined,
    dirty: false,
    alarmAt: undefined,
    alarmFiber: undefined
  }
  // It parks (holding no timer) when there is no work.
  shared.runDriver(drive(shared, state))
  return state
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

const formatSeconds = (millis: number) => `${Math.ceil(millis / 1000)} s`

/** A quota that cannot be met in time: the wait foreseen is longer than the caller may wait. */
const saturated = (state: KeyState, waiter: Waiter, expectedWaitMs: number) =>
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
    }, longer than this request may wait (${formatSeconds(waiter.deadline - waiter.queuedAt)})`
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

/**
 * Admits a request to a key: refused at once when it can never fit, when the key is paused past what it waits,
 * or when the wait foreseen ends after its deadline; otherwise queued for the key's driver, in arrival order. Once
 * admitted it holds a permit for the scope and sleeps the wait its reservation implies (and what is left of a
 * pause a 429 closed meanwhile).
 */
export const admitTo = (
  shared: Shared,
  state: KeyState,
  target: Target,
  estimate: Estimate,
  options: AdmitOptions | undefined
): Effect.Effect<Admission, Errors.RateLimitError | Errors.QuotaExhaustedError, Scope.Scope> =>
  Effect.flatMap(Clock.currentTimeMillis, (
    queuedAt
  ): Effect.Effect<Admission, Errors.RateLimitError | Errors.QuotaExhaustedError, Scope.Scope> => {
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
    const place = state.queued + 1
    return Effect.flatMap(expectedWait(shared, state, estimate, { place, aheadShare: 1 }), (expected) => {
      const waiter: Waiter = {
        estimate,
        target,
        queuedAt,
        deadline,
        maxPause,
        onQueued: told(options?.onQueued),
        place,
        servedBefore: state.served,
        status: "new",
        resume: undefined
      }
      // A wait that cannot end in time is refused now, with how long it would take, not at the deadline.
      if (expected > 0 && queuedAt + expected > deadline) return Effect.fail(saturated(state, waiter, expected))
      const tellOnArrival = waiter.onQueued !== undefined && (expected > 0 || state.permitsHeld >= state.permits)
      const wait = queueAndWait(shared, state, waiter)
      return (tellOnArrival ? Effect.zipRight(waiter.onQueued!({ place, expectedWaitMs: expected }), wait) : wait).pipe(
        Effect.flatMap(() => Clock.currentTimeMillis),
        Effect.flatMap((admittedAt) =>
          Metric.update(Metrics.tagged(shared.waitTime, { key: state.key }), admittedAt - queuedAt)
        ),
        Effect.zipRight(
          Effect.acquireRelease(Effect.sync(() => state.inFlight++), () => Effect.sync(() => state.inFlight--))
        ),
        Effect.as<Admission>({
          reconcile: reconcileWith(shared, state, estimate),
          cancel: giveBack(shared, state, estimate)
        })
      )
    })
  })

/**
 * The wait of one admitted caller, from its arrival in the queue: the driver's verdict, then (holding its permit,
 * whose release is registered before anything can interrupt) the sleep its reservation implies, then what is left
 * of a pause a provider 429 closed while it slept. An interrupted caller leaves the queue, or gives its permit and
 * reservation back.
 */
const queueAndWait = (
  shared: Shared,
  state: KeyState,
  waiter: Waiter
): Effect.Effect<void, Errors.RateLimitError, Scope.Scope> => {
  const depth = Metrics.tagged(shared.queueDepth, { key: state.key })
  return Effect.uninterruptibleMask((restore) =>
    Metric.incrementBy(depth, 1).pipe(
      Effect.zipRight(
        goesNow(state, waiter.queuedAt) ?
          reserveNow(shared, state, waiter) :
          restore(Effect.async<number, Errors.RateLimitError>((resume) => {
            waiter.resume = resume
            enqueue(state, waiter)
            return abandon(shared, state, waiter)
          })).pipe(
            // Interrupted after the verdict but before it was taken: the permit (and reservation) go back.
            Effect.onInterrupt(() => abandon(shared, state, waiter))
          )
      ),
      Effect.tap(() => holdPermit(state)),
      Effect.flatMap((delay) =>
        restore(sleepThenGate(state, waiter, delay)).pipe(
          Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : giveBack(shared, state, waiter.estimate))
        )
      ),
      Effect.ensuring(Effect.zipRight(
        Effect.sync(() => {
          if (waiter.status !== "new") state.queued--
        }),
        Metric.incrementBy(depth, -1)
      ))
    )
  )
}

/** Whether an arrival may reserve at once, itself: nobody queued ahead, a permit free, the gate open. */
const goesNow = (state: KeyState, now: number) =>
  !state.reserving && headOf(state) === undefined && state.permitsHeld < state.permits && state.pausedUntil <= now

/**
 * The uncontended path, without the driver: the permit taken and the reservation made by the caller. Arrivals
 * meanwhile queue (and the driver waits) until it is done, so the order holds.
 */
const reserveNow = (shared: Shared, state: KeyState, waiter: Waiter): Effect.Effect<number, Errors.RateLimitError> =>
  Effect.suspend(() => {
    waiter.status = "admitted"
    state.queued++
    state.permitsHeld++
    state.reserving = true
    return reserve(shared, state, waiter.estimate).pipe(
      Effect.ensuring(Effect.sync(() => {
        state.reserving = false
        poke(state)
      })),
      Effect.flatMap((delay) => {
        if (delay === 0 || waiter.queuedAt + delay <= waiter.deadline) return Effect.succeed(delay)
        state.permitsHeld--
        return Effect.zipRight(giveBack(shared, state, waiter.estimate), Effect.fail(saturated(state, waiter, delay)))
      })
    )
  })

/** Registers the release of the permit the driver gave: how long it was held is remembered, for the estimates. */
const holdPermit = (state: KeyState) =>
  Effect.flatMap(
    Clock.currentTimeMillis,
    (takenAt) =>
      Effect.addFinalizer(() =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const held = now - takenAt
          state.meanHoldMillis = state.meanHoldMillis === 0 ? held : 0.8 * state.meanHoldMillis + 0.2 * held
          state.permitsHeld--
          poke(state)
        })
      )
  )

/**
 * The wait a reservation implies, then the gate: a 429 that arrived meanwhile holds this caller too, until its
 * end (re-read on waking: a later 429 may extend it), unless that is longer than the caller may wait.
 */
const sleepThenGate = (state: KeyState, waiter: Waiter, delay: number): Effect.Effect<void, Errors.RateLimitError> =>
  Effect.gen(function*() {
    if (delay > 0) {
      if (waiter.onQueued !== undefined) yield* waiter.onQueued({ place: 1, expectedWaitMs: delay })
      yield* Effect.sleep(delay)
    }
    for (let now = yield* Clock.currentTimeMillis; now < state.pausedUntil; now = yield* Clock.currentTimeMillis) {
      if (pauseRefuses(state, state.pausedUntil - now, waiter.maxPause, waiter.deadline)) {
        return yield* pausedTooLong(state, waiter.target, state.pausedUntil - now)
      }
      yield* Effect.sleep(state.pausedUntil - now)
    }
  })

const enqueue = (state: KeyState, waiter: Waiter) => {
  waiter.status = "waiting"
  state.queue.push(waiter)
  state.queued++
  addPending(state, waiter.estimate, 1)
  pushAlarm(state, waiter, waiter.deadline, "deadline")
  if (waiter.onQueued !== undefined) pushAlarm(state, waiter, waiter.queuedAt + queuedUpdateEveryMillis, "tell")
  poke(state)
}

const pushAlarm = (state: KeyState, waiter: Waiter, at: number, kind: Alarm["kind"]) =>
  state.alarms.push({ at, seq: state.alarmSeq++, waiter, kind })

/** A waiter leaves the queue (its reservation no longer pending); the front of the queue skips those gone. */
const leaveQueue = (state: KeyState, waiter: Waiter, status: "admitted" | "gone") => {
  waiter.status = status
  addPending(state, waiter.estimate, -1)
  while (state.queueHead < state.queue.length && state.queue[state.queueHead]!.status !== "waiting") {
    state.queueHead++
  }
  // Compacted once the gone part is most of the array: amortized O(1) per waiter.
  if (state.queueHead > 1_024 && state.queueHead * 2 > state.queue.length) {
    state.queue = state.queue.slice(state.queueHead)
    state.queueHead = 0
  }
}

/** The first waiter still waiting. */
const headOf = (state: KeyState): Waiter | undefined => state.queue[state.queueHead]

/** Admits a waiter: a permit is its, and the wait its reservation implies. */
const admitWaiter = (state: KeyState, waiter: Waiter, delay: number) => {
  leaveQueue(state, waiter, "admitted")
  state.permitsHeld++
  waiter.resume!(Effect.succeed(delay))
}

/** Refuses a waiter, with why. */
const refuse = (state: KeyState, waiter: Waiter, error: Errors.RateLimitError) => {
  leaveQueue(state, waiter, "gone")
  waiter.resume!(Effect.fail(error))
}

/**
 * An interrupted caller: still queued, it leaves the queue; admitted (its verdict already given), it gives its
 * permit back. Its reservation, if any, is given back by the caller's own `onExit`.
 */
const abandon = (shared: Shared, state: KeyState, waiter: Waiter): Effect.Effect<void> =>
  Effect.suspend(() => {
    const status = waiter.status
    if (status === "waiting") leaveQueue(state, waiter, "gone")
    if (status === "admitted") {
      waiter.status = "gone"
      state.permitsHeld--
    }
    if (status !== "waiting" && status !== "admitted") return Effect.void
    poke(state)
    return status === "admitted" ? giveBack(shared, state, waiter.estimate) : Effect.void
  })

/** Something changed that may let the driver admit or refuse: wake it, or have it look again before it parks. */
const poke = (state: KeyState) => {
  const wake = state.wakeDriver
  if (wake === undefined) {
    state.dirty = true
    return
  }
  state.wakeDriver = undefined
  wake()
}

/** How often a caller queued for a permit hears its place again. */
const queuedUpdateEveryMillis = 5_000

/**
 * The key's driver: one fiber per key, which admits the head of the queue whenever a permit is free and the gate
 * is open (one reservation across every bucket, in arrival order), refuses waiters at their deadlines, tells
 * queued waiters their place every 5 seconds, and otherwise parks until something changes or its one timer rings.
 */
const drive = (shared: Shared, state: KeyState): Effect.Effect<never> =>
  Effect.forever(Effect.gen(function*() {
    state.dirty = false
    const now = yield* Clock.currentTimeMillis
    yield* ringDue(shared, state, now)
    const head = state.reserving ? undefined : headOf(state)
    if (head !== undefined && now < state.pausedUntil) {
      if (pauseRefuses(state, state.pausedUntil - now, head.maxPause, head.deadline)) {
        state.served++
        refuse(state, head, pausedTooLong(state, head.target, state.pausedUntil - now))
        return
      }
      yield* setAlarm(state, state.pausedUntil, now)
    } else if (head !== undefined && state.permitsHeld < state.permits) {
      const delay = yield* reserve(shared, state, head.estimate)
      if (head.status !== "waiting") {
        // Interrupted while the store answered.
        yield* giveBack(shared, state, head.estimate)
        return
      }
      state.served++
      if (delay > 0 && now + delay > head.deadline) {
        yield* giveBack(shared, state, head.estimate)
        refuse(state, head, saturated(state, head, delay))
      } else {
        admitWaiter(state, head, delay)
      }
      return
    }
    const next = nextAlarm(state)
    if (next !== undefined) yield* setAlarm(state, next, now)
    yield* park(state)
  }))

/** Parks the driver until `poke` (or at once when something changed since it last looked). */
const park = (state: KeyState): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (state.dirty) {
      resume(Effect.void)
      return
    }
    state.wakeDriver = () => resume(Effect.void)
  })

/** The earliest alarm of a waiter still waiting (alarms of those gone are dropped as they surface). */
const nextAlarm = (state: KeyState): number | undefined => {
  for (let top = state.alarms.peek(); top !== undefined; top = state.alarms.peek()) {
    if (top.waiter.status === "waiting") return top.at
    state.alarms.pop()
  }
  return undefined
}

/** The key's one timer, set to ring at `at` unless it already rings sooner. */
const setAlarm = (state: KeyState, at: number, now: number): Effect.Effect<void> => {
  if (state.alarmAt !== undefined && state.alarmAt <= at) return Effect.void
  const previous = state.alarmFiber
  state.alarmAt = at
  return Effect.zipRight(
    previous === undefined ? Effect.void : Fiber.interruptFork(previous),
    Effect.map(
      Effect.forkDaemon(
        Effect.zipRight(
          Effect.sleep(at - now),
          Effect.sync(() => {
            state.alarmAt = undefined
            state.alarmFiber = undefined
            poke(state)
          })
        )
      ),
      (fiber) => {
        state.alarmFiber = fiber
      }
    )
  )
}

/** The alarms due at `now`: waiters past their deadline are refused, queued ones hear their place. */
const ringDue = (shared: Shared, state: KeyState, now: number): Effect.Effect<void> =>
  Effect.suspend(function ring(): Effect.Effect<void> {
    const top = state.alarms.peek()
    if (top === undefined || top.at > now) return Effect.void
    state.alarms.pop()
    const waiter = top.waiter
    if (waiter.status !== "waiting") return ring()
    const estimateNow = placeEstimate(shared, state, waiter)
    if (top.kind === "deadline") {
      return Effect.flatMap(estimateNow, ({ expectedWaitMs }) => {
        if (waiter.status === "waiting") refuse(state, waiter, saturated(state, waiter, expectedWaitMs))
        return ring()
      })
    }
    pushAlarm(state, waiter, top.at + queuedUpdateEveryMillis, "tell")
    // Told only while it waits for a permit (a pause's wait is not what the estimate foresees).
    if (state.permitsHeld < state.permits) return ring()
    return Effect.flatMap(estimateNow, (queued) =>
      Effect.zipRight(
        // The caller's callback must not stop the key: a failure or defect in it is logged.
        Effect.catchAllCause(waiter.onQueued!(queued), (cause) => Effect.logWarning("onQueued failed", cause)),
        Effect.suspend(ring)
      ))
  })

/** A waiter's place now and the wait foreseen from it. */
const placeEstimate = (shared: Shared, state: KeyState, waiter: Waiter): Effect.Effect<ProviderRateLimiter.Queued> => {
  const place = Math.max(1, waiter.place - (state.served - waiter.servedBefore))
  const others = Math.max(1, state.pending.requests - 1)
  return Effect.map(
    expectedWait(shared, state, waiter.estimate, { place, aheadShare: Math.min(1, (place - 1) / others) }),
    (expectedWaitMs) => ({ place, expectedWaitMs })
  )
}

/** One reservation across every bucket of the key: the wait it implies (0 when the budget is there now). */
const reserve = (shared: Shared, state: KeyState, estimate: Estimate): Effect.Effect<number> =>
  Effect.map(
    Effect.forEach(
      bucketsOf(state.quota, estimate),
      (b) => shared.buckets.take(bucketKey(shared, state, b.name), b.limit, b.tokens)
    ),
    (results) => Math.max(0, ...results.map((result) => result.delay))
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

const addPending = (state: KeyState, estimate: Estimate, sign: 1 | -1) => {
  state.pending.requests += sign
  state.pending.inputTokens += sign * estimate.inputTokens
  state.pending.outputTokens += sign * estimate.outputTokens
}

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
    // The head of the queue may now be paused past what it waits: the driver refuses it at once.
    poke(state)
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
