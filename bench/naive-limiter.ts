/**
 * The naive rate limiter a first design of this service used (a class that counts requests and tokens in the
 * last minute), ported to Effect's Clock and kept for comparison only: it polls
 * (every 100 ms for a slot, every second for the budgets), counts a request's tokens only after it completes,
 * and so lets concurrent requests overshoot the tokens-per-minute budget.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"

export interface NaiveRateLimitConfig {
  readonly maxRequestsPerMinute: number
  readonly maxTokensPerMinute: number
  readonly maxConcurrentRequests: number
}

export const makeNaiveRateLimiter = (config: NaiveRateLimitConfig) => {
  let activeRequests = 0
  let requestTimestamps: Array<number> = []
  let tokenUsage: Array<{ timestamp: number; tokens: number }> = []

  const waitForAvailability = (estimatedTokens: number) =>
    Effect.gen(function*() {
      while (true) {
        const now = yield* Clock.currentTimeMillis
        // Check concurrent request limit
        if (activeRequests >= config.maxConcurrentRequests) {
          yield* Effect.sleep(100)
          continue
        }
        // Check requests per minute
        const recentRequests = requestTimestamps.filter((t) => now - t < 60_000).length
        if (recentRequests >= config.maxRequestsPerMinute) {
          yield* Effect.sleep(1_000)
          continue
        }
        // Check tokens per minute
        const recentTokens = tokenUsage.filter((t) => now - t.timestamp < 60_000).reduce((sum, t) => sum + t.tokens, 0)
        if (recentTokens + estimatedTokens > config.maxTokensPerMinute) {
          yield* Effect.sleep(1_000)
          continue
        }
        // All checks passed
        break
      }
    })

  const cleanupOldRecords = (now: number) => {
    const oneMinuteAgo = now - 60_000
    requestTimestamps = requestTimestamps.filter((t) => t > oneMinuteAgo)
    tokenUsage = tokenUsage.filter((t) => t.timestamp > oneMinuteAgo)
  }

  const execute = <A, E, R>(fn: Effect.Effect<A, E, R>, estimatedTokens: number) =>
    Effect.gen(function*() {
      yield* waitForAvailability(estimatedTokens)
      requestTimestamps.push(yield* Clock.currentTimeMillis)
      activeRequests++
      return yield* fn.pipe(
        Effect.ensuring(Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          tokenUsage.push({ timestamp: now, tokens: estimatedTokens })
          activeRequests--
          cleanupOldRecords(now)
        }))
      )
    })

  return { execute }
}
