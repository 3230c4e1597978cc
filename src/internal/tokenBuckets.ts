/**
 * Token buckets over `@effect/experimental`'s `RateLimiter` store (memory or Redis): taking, giving back and
 * lowering, each bucket a key of the store with its limit per window.
 *
 * @internal
 */
import type * as RateLimiter from "@effect/experimental/RateLimiter"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"

/** The buckets of one store. */
export interface TokenBuckets {
  /** Takes tokens from a bucket (negative tokens give them back): the wait before they are there, and what is left. */
  readonly take: (
    key: string,
    limit: number,
    tokens: number
  ) => Effect.Effect<{ readonly delay: number; readonly remaining: number }>
  /** What a bucket holds now (taking nothing). */
  readonly level: (key: string, limit: number) => Effect.Effect<number>
  /** Gives tokens back to a bucket, never past its limit (the store would let it overflow and allow a burst). */
  readonly refund: (key: string, limit: number, tokens: number) => Effect.Effect<void>
  /**
   * Lowers a bucket to `ceiling` (and never above its limit) when it holds more: the store takes at most a
   * bucket's limit in one step, and keeps what a bucket held when its limit is lowered until it next refills.
   */
  readonly lowerTo: (key: string, limit: number, ceiling: number) => Effect.Effect<void>
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
        }))
  }
}
