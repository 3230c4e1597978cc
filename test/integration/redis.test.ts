/**
 * Two limiter instances in separate runtimes, sharing one Redis, share one quota: together they never exceed
 * it, and together they use at least 90 % of it. Needs a Redis server: `REDIS_URL` (CI starts one). Bounded: a
 * few seconds of wall time.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as ProviderRateLimiterRedis from "../../src/ProviderRateLimiter/Redis.js"
import { testPrefix } from "../utils/redisKeys.js"

const redisUrl = process.env.REDIS_URL
if (redisUrl === undefined) {
  if (process.env.CI === "true") {
    throw new Error("REDIS_URL is not set: CI must start a Redis server for the Redis suite")
  }
  console.warn("REDIS_URL is not set: the Redis rate limiter suite is skipped (CI runs it)")
}

/** 60 requests a minute: a bucket of 60 that refills one a second. */
const quota = { requestsPerMinute: 60, tokensPerMinute: 10_000_000, maxConcurrent: 50 }
const seconds = 5

/** Two limiter instances in runtimes of their own, over one Redis with a fresh prefix. */
const twoInstances = () => {
  const url = new URL(redisUrl!)
  const options = {
    quotas: { openai: quota },
    prefix: testPrefix(),
    redis: { host: url.hostname, port: Number(url.port || 6379) }
  }
  return [
    ManagedRuntime.make(ProviderRateLimiterRedis.layer(options)),
    ManagedRuntime.make(ProviderRateLimiterRedis.layer(options))
  ] as const
}

describe.skipIf(redisUrl === undefined)("ProviderRateLimiter over Redis", () => {
  it.live("shares one quota between two runtimes: never above it, at least 90 % of it", () =>
    Effect.gen(function*() {
      const url = new URL(redisUrl!)
      const options = {
        quotas: { openai: quota },
        queueTimeout: Duration.seconds(seconds),
        prefix: testPrefix(),
        redis: { host: url.hostname, port: Number(url.port || 6379) }
      }
      const runtimes = [
        ManagedRuntime.make(ProviderRateLimiterRedis.layer(options)),
        ManagedRuntime.make(ProviderRateLimiterRedis.layer(options))
      ]
      const start = yield* Clock.currentTimeMillis
      /** One instance admitting as fast as it is let, until the window is over. */
      const instance = (runtime: (typeof runtimes)[number]) =>
        Effect.promise(() =>
          runtime.runPromise(Effect.gen(function*() {
            const limiter = yield* ProviderRateLimiter.ProviderRateLimiter
            let admitted = 0
            yield* Effect.forEach(Array.from({ length: 200 }), () =>
              Effect.scoped(
                limiter.admit({ provider: "openai", model: "gpt-4.1" }, { inputTokens: 1, outputTokens: 1 })
              ).pipe(
                Effect.flatMap(() => Clock.currentTimeMillis),
                Effect.tap((now) => Effect.sync(() => now - start <= seconds * 1_000 && admitted++)),
                Effect.ignore
              ), { concurrency: 50, discard: true })
            return admitted
          }))
        )
      const [a, b] = yield* Effect.all([instance(runtimes[0]!), instance(runtimes[1]!)], { concurrency: 2 })
      yield* Effect.promise(() => Promise.all(runtimes.map((r) => r.dispose())))
      // The bucket's 60 plus one a second for the window.
      const allowed = 60 + seconds
      expect(a! + b!).toBeLessThanOrEqual(allowed)
      expect(a! + b!).toBeGreaterThanOrEqual(0.9 * allowed)
      expect(a).toBeGreaterThan(0)
      expect(b).toBeGreaterThan(0)
    }), 30_000)

  it.live("a 429 met by one instance pauses the others: they wait about its retry-after", () =>
    Effect.gen(function*() {
      const [a, b] = twoInstances()
      const target = { provider: "openai", model: "gpt-4.1" } as const
      const admitOne = (runtime: typeof a) =>
        Effect.promise(() =>
          runtime.runPromise(Effect.flatMap(ProviderRateLimiter.ProviderRateLimiter, (limiter) =>
            limiter.withAdmission(target, { inputTokens: 1, outputTokens: 1 }, () =>
              Effect.void)))
        )
      // Both have used the key: b's next admission would go at once.
      yield* admitOne(a)
      yield* admitOne(b)
      yield* Effect.promise(() =>
        a.runPromise(Effect.flatMap(ProviderRateLimiter.ProviderRateLimiter, (limiter) =>
          limiter.pause(target, 2_000)))
      )
      const started = Date.now()
      yield* admitOne(b)
      const waited = Date.now() - started
      yield* Effect.promise(() => Promise.all([a.dispose(), b.dispose()]))
      // The 429 emptied the shared bucket: b waits for it to refill (one a second), where it went at once before.
      expect(waited).toBeGreaterThanOrEqual(900)
      expect(waited).toBeLessThan(3_500)
    }), 15_000)

  it.live("a 429's pause and the limits it cut reach the other instance over pub/sub", () =>
    Effect.gen(function*() {
      const [a, b] = twoInstances()
      const target = { provider: "openai", model: "gpt-4.1" } as const
      const onLimiter = <A>(
        runtime: typeof a,
        use: (limiter: ProviderRateLimiter.ProviderRateLimiter["Type"]) => Effect.Effect<A, unknown>
      ) => Effect.promise(() => runtime.runPromise(Effect.flatMap(ProviderRateLimiter.ProviderRateLimiter, use)))
      const snapshot = (runtime: typeof a) =>
        onLimiter(runtime, (limiter) => Effect.map(limiter.snapshot, (s) => s[0]!))
      for (const runtime of [a, b]) {
        yield* onLimiter(
          runtime,
          (limiter) => limiter.withAdmission(target, { inputTokens: 1, outputTokens: 1 }, () => Effect.void)
        )
      }
      // A retry-after of 30 s: far past a request's spacing, so the 429 cuts.
      yield* onLimiter(a, (limiter) => limiter.pause(target, 30_000))
      const cut = (yield* snapshot(a)).quota
      expect(cut.requestsPerMinute).toBeLessThan(quota.requestsPerMinute)
      // Pub/sub delivers within milliseconds on loopback; a second is the bound.
      let onB = yield* snapshot(b)
      for (let i = 0; i < 20 && onB.pausedUntil === undefined; i++) {
        yield* Effect.sleep("50 millis")
        onB = yield* snapshot(b)
      }
      yield* Effect.promise(() => Promise.all([a.dispose(), b.dispose()]))
      expect(onB.quota).toEqual(cut)
      expect(onB.pausedUntil! - Date.now()).toBeGreaterThan(28_000)
    }), 15_000)
})
