/**
 * Token buckets: taking, giving back and lowering, each bucket a key with its limit per window. Over
 * `@effect/experimental`'s `RateLimiter` store (Redis, shared by a fleet), or in this process's memory, where
 * every operation is also there as a plain synchronous function (`local`), so that the limiter reserves across
 * several buckets in one step, with no effect per bucket.
 *
 * @internal
 */
import type * as RateLimiter from "@effect/experimental/RateLimiter"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Sweep from "./sweep.js"

/** What a take leaves: the wait before the tokens are there (0 when they are), and what the bucket holds. */
export interface Taken {
  readonly delay: number
  readonly remaining: number
}

/** The buckets of one store. */
export interface TokenBuckets {
  /** Takes tokens from a bucket (negative tokens give them back): the wait before they are there, and what is left. */
  readonly take: (key: string, limit: number, tokens: number) => Effect.Effect<Taken>
  /** What a bucket holds now (taking nothing). */
  readonly level: (key: string, limit: number) => Effect.Effect<number>
  /** Gives tokens back to a bucket, never past its limit (the store would let it overflow and allow a burst). */
  readonly refund: (key: string, limit: number, tokens: number) => Effect.Effect<void>
  /**
   * Lowers a bucket to `ceiling` (and never above its limit) when it holds more: the store takes at most a
   * bucket's limit in one step, and keeps what a bucket held when its limit is lowered until it next refills.
   */
  readonly lowerTo: (key: string, limit: number, ceiling: number) => Effect.Effect<void>
  /** The same operations, synchronous, when the buckets live in this process (`undefined` for a remote store). */
  readonly local: LocalBuckets | undefined
}

/** Buckets in this process's memory: each operation at the time `now` (epoch milliseconds). */
export interface LocalBuckets {
  readonly take: (key: string, limit: number, tokens: number, now: number) => Taken
  readonly level: (key: string, limit: number, now: number) => number
  /** Whether a bucket is full at `now`, as one never taken from is (without making it). */
  readonly full: (key: string, limit: number, now: number) => boolean
  readonly refund: (key: string, limit: number, tokens: number, now: number) => void
}

/** How buckets over a remote store carry on when it is away. */
export interface StoreFallback {
  /** The longest a store call may take before the local buckets answer instead, in milliseconds. */
  readonly timeoutMillis: number
  /** The share of each limit the local buckets allow while the store is away (1/N for N instances). */
  readonly localShare: number
  /** How long after a failure the store is tried again, in milliseconds. */
  readonly retryAfterMillis: number
  /** Counts the store calls the local buckets answered because the store failed or was silent. */
  readonly unavailable: Metric.Metric.Counter<number>
}

/**
 * Buckets that refill continuously over `window`, over the store behind `limiter`. When the store fails or does
 * not answer within `fallback.timeoutMillis`, buckets in this process's memory answer instead, at
 * `fallback.localShare` of each limit, until the store answers again (tried every `retryAfterMillis`): a
 * generation never waits on the store past the timeout, and is never let through unlimited. Logged once per
 * outage, and counted.
 */
export const make = (
  limiter: RateLimiter.RateLimiter,
  window: Duration.Duration,
  clock: Clock.Clock,
  fallback: StoreFallback
): TokenBuckets => {
  const local = memory(clock, window)
  const share = (limit: number) => Math.max(1, Math.floor(limit * fallback.localShare))
  const windowMillis = Duration.toMillis(window)
  // What each bucket held when the store last said, and when: where its local stand-in starts.
  const lastKnown = new Map<string, { readonly remaining: number; readonly at: number; readonly limit: number }>()
  // One full again is as one never heard of: those go when the keys pile up.
  const sweepKnown = Sweep.make(lastKnown, bucketSweepThreshold)
  const knowLevel = (key: string, limit: number, remaining: number) => {
    const now = clock.unsafeCurrentTimeMillis()
    if (!lastKnown.has(key)) {
      sweepKnown((held) => held.remaining + ((now - held.at) * held.limit) / windowMillis >= held.limit)
    }
    lastKnown.set(key, { remaining, at: now, limit })
  }
  // The buckets the local ones stood in for in this outage: their limits, and the tokens taken from them (net of
  // refunds). When the store answers again it is told, or every instance comes back to a quota it spent.
  const answeredLocally = new Map<string, { readonly limit: number; taken: number }>()
  const answerLocally = (key: string, limit: number, tokens: number) => {
    const bucket = share(limit)
    let entry = answeredLocally.get(key)
    if (entry === undefined) {
      entry = { limit, taken: 0 }
      answeredLocally.set(key, entry)
      startLocally(key, limit, bucket)
    }
    const taken = Math.min(tokens, bucket)
    entry.taken += taken
    return local.take(key, bucket, taken)
  }
  // A local bucket starts at its share of what the store held (refilled since), not full: a fleet that had spent
  // the quota does not get a burst of a whole quota's worth when the store goes away.
  const startLocally = (key: string, limit: number, bucket: number) => {
    const known = lastKnown.get(key)
    if (known === undefined) return
    const now = clock.unsafeCurrentTimeMillis()
    const held = Math.min(limit, known.remaining + ((now - known.at) * limit) / windowMillis)
    // A store in debt (reservations ahead of the refill, a 429's emptying) leaves the local bucket in debt too, at
    // most a bucket's worth: taken in steps, a take of more than the bucket taking nothing.
    const start = Math.max(-bucket, Math.min(bucket, Math.floor(held * fallback.localShare)))
    for (let owed = local.local!.level(key, bucket, now) - start; owed > 0; owed -= bucket) {
      local.local!.take(key, bucket, Math.min(owed, bucket), now)
    }
  }
  // At most a bucket's share: what was taken past it (reservations ahead of the refill, a 429's emptying) is this
  // instance's own wait, which the others need not share.
  const tellStore = Effect.suspend(() => {
    const owed = [...answeredLocally].map(([key, { limit, taken }]) => ({
      key,
      limit,
      tokens: Math.min(share(limit), taken)
    }))
    answeredLocally.clear()
    return Effect.forEach(
      owed,
      ({ key, limit, tokens }) =>
        tokens <= 0 ? Effect.void : abandonAfter(
          limiter.consume({ key, limit, tokens, window, algorithm: "token-bucket", onExceeded: "delay" }),
          fallback.timeoutMillis
        ),
      { discard: true }
    ).pipe(
      // Lost when the store fails again: a hint, as the outage's use was.
      Effect.ignore
    )
  })
  // The store is away until then (epoch milliseconds): it is not asked before.
  let awayUntil = 0
  let away = false
  const take = (key: string, limit: number, tokens: number): Effect.Effect<Taken> =>
    Effect.suspend(() => {
      if (clock.unsafeCurrentTimeMillis() < awayUntil) return answerLocally(key, limit, tokens)
      const consume = limiter.consume({ key, limit, tokens, window, algorithm: "token-bucket", onExceeded: "delay" })
      return abandonAfter(consume, fallback.timeoutMillis).pipe(
        Effect.map((result): Taken => {
          knowLevel(key, limit, result.remaining)
          return { delay: Duration.toMillis(result.delay), remaining: result.remaining }
        }),
        Effect.tap(() => {
          if (!away) return Effect.void
          away = false
          // Not waited for by the caller that found the store back.
          return Effect.zipRight(
            Effect.logInfo(
              "Rate limiter store answers again; its buckets are back in use, less what was taken while it was away"
            ),
            Effect.asVoid(Effect.forkDaemon(tellStore))
          )
        }),
        Effect.catchAll((error) => {
          awayUntil = clock.unsafeCurrentTimeMillis() + fallback.retryAfterMillis
          const outageBegins = !away
          away = true
          return Effect.zipRight(
            Effect.zipRight(
              Metric.increment(fallback.unavailable),
              outageBegins
                ? Effect.logWarning(
                  `Rate limiter store unavailable; local buckets at ${fallback.localShare} of each limit until it answers`
                ).pipe(Effect.annotateLogs({ error: error.message }))
                : Effect.void
            ),
            answerLocally(key, limit, tokens)
          )
        })
      )
    })
  return withDerived(take, undefined)
}

/**
 * One call to the store before the first admission, waited for up to `timeoutMillis` and not counted as an outage
 * whatever its end: a process's first call (the connection made, the script loaded, its code compiled in a process
 * busy starting up) took longer than the store timeout, and its first admissions were answered from local buckets.
 */
export const warmUp = (
  limiter: RateLimiter.RateLimiter,
  key: string,
  window: Duration.Duration,
  timeoutMillis: number
): Effect.Effect<void> =>
  Effect.ignore(abandonAfter(
    limiter.consume({ key, limit: 1, tokens: 0, window, algorithm: "token-bucket", onExceeded: "delay" }),
    timeoutMillis
  ))

/**
 * An effect that fails once `millis` pass without its answer, in any region: the call runs in a fiber of its own,
 * interruptible, and is abandoned (interrupted in the background), not waited for. `Effect.timeout` interrupts
 * its effect and waits for it: where the caller is uninterruptible (a reservation, a finalizer's reconciliation)
 * the effect's fiber inherits that, and a Redis that stopped answering held it until ioredis gave up (a second), or
 * forever when the server accepts and never answers.
 */
const abandonAfter = <A, E>(
  effect: Effect.Effect<A, E>,
  millis: number
): Effect.Effect<A, E | { readonly message: string }> =>
  Effect.flatMap(
    // Both interruptible whatever the caller's region (a fiber inherits it), forked together or not at all.
    Effect.uninterruptible(Effect.zip(
      Effect.forkDaemon(Effect.interruptible(effect)),
      Effect.forkDaemon(Effect.interruptible(Effect.sleep(millis)))
    )),
    ([call, timer]) =>
      Effect.async<A, E | { readonly message: string }>((resume) => {
        let settled = false
        call.addObserver((exit) => {
          if (settled) return
          settled = true
          timer.unsafeInterruptAsFork(FiberId.none)
          resume(exit)
        })
        timer.addObserver(() => {
          if (settled) return
          settled = true
          call.unsafeInterruptAsFork(FiberId.none)
          resume(Effect.fail({ message: `no answer within ${millis} ms` }))
        })
        // The caller interrupted: neither is waited for.
        return Effect.sync(() => {
          settled = true
          call.unsafeInterruptAsFork(FiberId.none)
          timer.unsafeInterruptAsFork(FiberId.none)
        })
      })
  )

const bucketSweepThreshold = 4_096

/**
 * Buckets in memory that refill continuously over `window`: the arithmetic of `@effect/experimental`'s memory
 * store and its `consume` with `onExceeded: "delay"` (a bucket refills a whole token every `window / limit`;
 * a take of more than the limit waits a window and takes nothing), so that both stores admit at the same times.
 */
export const memory = (
  clock: Clock.Clock,
  window: Duration.Duration
): TokenBuckets & { readonly size: () => number } => {
  const windowMillis = Duration.toMillis(window)
  const buckets = new Map<string, { tokens: number; lastRefill: number; limit: number }>()
  // A bucket refilled to its limit is as a new one: those go when the keys pile up.
  const sweepBuckets = Sweep.make(buckets, bucketSweepThreshold)
  const take = (key: string, limit: number, tokens: number, now: number): Taken => {
    if (tokens > limit) return { delay: windowMillis, remaining: 0 }
    const refillMillis = windowMillis / limit
    let bucket = buckets.get(key)
    if (bucket === undefined) {
      sweepBuckets((held, known) => full(known, held.limit, now))
      bucket = { tokens: limit, lastRefill: now, limit }
      buckets.set(key, bucket)
    } else {
      bucket.limit = limit
      const refilled = Math.floor((now - bucket.lastRefill) / refillMillis)
      if (refilled > 0) {
        bucket.tokens = Math.min(limit, bucket.tokens + refilled)
        bucket.lastRefill += refilled * refillMillis
      }
    }
    bucket.tokens -= tokens
    const remaining = bucket.tokens
    return { delay: remaining >= 0 ? 0 : refillMillis * -remaining, remaining }
  }
  const level = (key: string, limit: number, now: number) => take(key, limit, 0, now).remaining
  const full = (key: string, limit: number, now: number) => {
    const bucket = buckets.get(key)
    return bucket === undefined ||
      bucket.tokens + Math.floor((now - bucket.lastRefill) / (windowMillis / limit)) >= limit
  }
  const local: LocalBuckets = {
    take,
    level,
    full,
    refund: (key, limit, tokens, now) => {
      const back = Math.min(tokens, limit - level(key, limit, now))
      if (back > 0) take(key, limit, -back, now)
    }
  }
  return {
    ...withDerived(
      (key, limit, tokens) => Effect.sync(() => take(key, limit, tokens, clock.unsafeCurrentTimeMillis())),
      local
    ),
    // How many buckets are kept (for tests of the sweep).
    size: () => buckets.size
  }
}

/** `level`, `refund` and `lowerTo` in terms of `take`. */
const withDerived = (
  take: TokenBuckets["take"],
  local: LocalBuckets | undefined
): TokenBuckets => {
  const level = (key: string, limit: number) => Effect.map(take(key, limit, 0), (result) => result.remaining)
  return {
    take,
    level,
    refund: (key, limit, tokens) =>
      Effect.flatMap(level(key, limit), (remaining) => {
        const back = Math.min(tokens, limit - remaining)
        return back > 0 ? Effect.asVoid(take(key, limit, -back)) : Effect.void
      }),
    lowerTo: (key, limit, ceiling) =>
      Effect.flatMap(level(key, limit), (held) =>
        Effect.gen(function*() {
          for (let excess = held - Math.min(ceiling, limit); excess > 0; excess -= limit) {
            yield* take(key, limit, Math.min(excess, limit))
          }
        })),
    local
  }
}
