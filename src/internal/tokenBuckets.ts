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
  readonly refund: (key: string, limit: number, tokens: number, now: number) => void
}

/** Buckets that refill continuously over `window`, over the store behind `limiter`. */
export const make = (limiter: RateLimiter.RateLimiter, window: Duration.Duration): TokenBuckets => {
  const take = (key: string, limit: number, tokens: number) =>
    limiter.consume({ key, limit, tokens, window, algorithm: "token-bucket", onExceeded: "delay" }).pipe(
      Effect.map((result) => ({ delay: Duration.toMillis(result.delay), remaining: result.remaining })),
      // A store failure must not stop generation: the request goes ahead and the provider limits it.
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logWarning("Rate limiter store failed; admitting without it").pipe(
            Effect.annotateLogs({ error: error.message })
          ),
          { delay: 0, remaining: limit }
        )
      )
    )
  return withDerived(take, undefined)
}

/**
 * Buckets in memory that refill continuously over `window`: the arithmetic of `@effect/experimental`'s memory
 * store and its `consume` with `onExceeded: "delay"` (a bucket refills a whole token every `window / limit`;
 * a take of more than the limit waits a window and takes nothing), so that both stores admit at the same times.
 */
export const memory = (clock: Clock.Clock, window: Duration.Duration): TokenBuckets => {
  const windowMillis = Duration.toMillis(window)
  const buckets = new Map<string, { tokens: number; lastRefill: number }>()
  const take = (key: string, limit: number, tokens: number, now: number): Taken => {
    if (tokens > limit) return { delay: windowMillis, remaining: 0 }
    const refillMillis = windowMillis / limit
    let bucket = buckets.get(key)
    if (bucket === undefined) {
      bucket = { tokens: limit, lastRefill: now }
      buckets.set(key, bucket)
    } else {
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
  const local: LocalBuckets = {
    take,
    level,
    refund: (key, limit, tokens, now) => {
      const back = Math.min(tokens, limit - level(key, limit, now))
      if (back > 0) take(key, limit, -back, now)
    }
  }
  return withDerived(
    (key, limit, tokens) => Effect.sync(() => take(key, limit, tokens, clock.unsafeCurrentTimeMillis())),
    local
  )
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
