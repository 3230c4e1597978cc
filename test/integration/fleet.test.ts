/**
 * A fleet: three instances, each a runtime of its own with the limiter over one Redis, send as fast as they are
 * let to one provider quota (the simulator's in-process face, enforcing 600 requests a minute and answering 429
 * past it). Together they use at least 90 % of what the quota allows and meet at most 1 % of 429s. Needs a Redis
 * server (`REDIS_URL`; CI starts one). Bounded: 10 seconds of wall time.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Classify from "../../src/internal/classify.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as ProviderRateLimiterRedis from "../../src/ProviderRateLimiter/Redis.js"
import * as InProcess from "../../src/simulator/InProcess.js"
import { testPrefix } from "../utils/redisKeys.js"

const redisUrl = process.env.REDIS_URL
const target = { provider: "openai", model: "gpt-4.1" } as const
const perMinute = 600
const seconds = 10

describe.skipIf(redisUrl === undefined)("a fleet sharing one quota through Redis", () => {
  it.live("three instances use at least 90 % of the quota and meet at most 1 % of 429s", () =>
    Effect.gen(function*() {
      const url = new URL(redisUrl!)
      const options = {
        // Each instance is configured with the whole quota: Redis makes it one.
        quotas: { openai: { requestsPerMinute: perMinute, tokensPerMinute: 10_000_000, maxConcurrent: 10 } },
        queueTimeout: "30 seconds" as const,
        prefix: testPrefix(),
        redis: { host: url.hostname, port: Number(url.port || 6379) }
      }
      const simulator = InProcess.make({
        quotas: { openai: { requestsPerMinute: perMinute, tokensPerMinute: 10_000_000 } },
        faults: { latencyMs: 50 },
        onResponse: () => Effect.void
      })
      const instances = [1, 2, 3].map(() => ManagedRuntime.make(ProviderRateLimiterRedis.layer(options)))
      const start = yield* Clock.currentTimeMillis
      const tally = { served: 0, refused: 0, attempts: 0 }
      /** One instance sending as fast as its limiter lets it, until the window is over. */
      const instance = (runtime: (typeof instances)[number]) =>
        Effect.promise(() =>
          runtime.runPromise(Effect.gen(function*() {
            const limiter = yield* ProviderRateLimiter.ProviderRateLimiter
            const model = yield* simulator.languageModel("openai", "gpt-4.1", { maxOutputTokens: 20 })
            const call = limiter.withAdmission(target, { inputTokens: 10, outputTokens: 20 }, () =>
              Effect.flatMap(Clock.currentTimeMillis, (nowMillis) =>
                LanguageModel.generateText({ prompt: "Name the keeper." }).pipe(
                  Effect.provideService(LanguageModel.LanguageModel, model),
                  Effect.mapError((error) => Classify.classify(error, { ...target, nowMillis }))
                )), { until: start + seconds * 1_000 })
            const worker = Effect.gen(function*() {
              while ((yield* Clock.currentTimeMillis) < start + seconds * 1_000) {
                tally.attempts++
                const outcome = yield* Effect.either(call)
                if (outcome._tag === "Right") {
                  tally.served++
                  continue
                }
                const error = outcome.left
                // The window is over for this one: its deadline came first.
                if (error._tag === "RateLimitError" && error.local) {
                  return
                }
                if (error._tag !== "RateLimitError") {
                  return yield* Effect.dieMessage(error.message)
                }
                tally.refused++
                yield* limiter.pause(target, error.retryAfterMs ?? 1_000)
                yield* Effect.sleep(error.retryAfterMs ?? 1_000)
              }
            })
            yield* Effect.all(
              Array.from({ length: 10 }, () =>
                worker),
              { concurrency: "unbounded", discard: true }
            )
          }))
        )
      yield* Effect.all(instances.map(instance), { concurrency: "unbounded", discard: true })
      yield* Effect.promise(() =>
        Promise.all(instances.map((runtime) => runtime.dispose()))
      )
      // The quota's bucket starts full, then refills ten a second. Measured: 696-697 of 700 served, one 429 in
      // about 726 attempts.
      const allowed = perMinute + (perMinute / 60) * seconds
      expect(tally.served).toBeLessThanOrEqual(allowed)
      expect(tally.served).toBeGreaterThanOrEqual(0.9 * allowed)
      expect(tally.refused).toBeLessThanOrEqual(0.01 * tally.attempts)
    }), 30_000)
})
