/**
 * Adaptive limits against a provider that enforces its quota and sends no rate-limit headers (some proxies strip
 * them): a limiter configured three times too high learns the quota from the 429s, its limits climbing back
 * between them, and a batch finishes near the time the quota allows, with few 429s. The simulator's in-process face
 * in virtual time: a quota of 60 requests a minute, calls of 2 s.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as Classify from "../src/internal/classify.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Content from "../src/simulator/Content.js"
import * as InProcess from "../src/simulator/InProcess.js"

const target = { provider: "openai", model: "gpt-4.1" } as const
const requests = 240
const quotaPerMinute = 60

/**
 * `requests` small calls at once through a limiter with `configured` requests a minute, each retried after a 429
 * (at its retry-after, at least a second): when the batch ended, and how many 429s it met.
 */
const batch = (configured: number) =>
  Effect.gen(function*() {
    const limiter = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(Effect.provide(
      ProviderRateLimiter.layerMemory({
        quotas: { openai: { requestsPerMinute: configured, tokensPerMinute: 10_000_000, maxConcurrent: 5 } },
        queueTimeout: "1 day"
      })
    ))
    // No headers reach the limiter: only the 429s tell it the quota.
    const simulator = InProcess.make({
      quotas: { openai: { requestsPerMinute: quotaPerMinute, tokensPerMinute: 10_000_000 } },
      faults: { latencyMs: 2_000 },
      onResponse: () => Effect.void
    })
    let refused = 0
    const one = Effect.gen(function*() {
      const model = yield* simulator.languageModel("openai", "gpt-4.1", { maxOutputTokens: 50 })
      while (true) {
        const outcome = yield* Effect.either(limiter.withAdmission(target, { inputTokens: 20, outputTokens: 50 }, () =>
          Effect.flatMap(Clock.currentTimeMillis, (nowMillis) =>
            LanguageModel.generateText({ prompt: "Name the lighthouse keeper." }).pipe(
              Effect.provideService(LanguageModel.LanguageModel, model),
              Effect.mapError((error) =>
                Classify.classify(error, { ...target, nowMillis })
              ),
              // As the engine does: the key is paused before this call's permit goes back.
              Effect.tapError((error) =>
                error._tag === "RateLimitError" && !error.local
                  ? limiter.pause(target, Math.max(1_000, error.retryAfterMs ?? 1_000))
                  : Effect.void
              )
            ))))
        if (outcome._tag === "Right") {
          return
        }
        const error = outcome.left
        if (error._tag !== "RateLimitError" || error.local) {
          return yield* Effect.dieMessage(error.message)
        }
        refused++
        const retryAfterMs = Math.max(1_000, error.retryAfterMs ?? 1_000)
        yield* Effect.sleep(retryAfterMs)
      }
    })
    const fiber = yield* Effect.fork(
      Effect.forEach(Array.from({ length: requests }), () =>
        one, { concurrency: "unbounded", discard: true })
    )
    // Virtual time in steps of a second, until the batch is done (at most half an hour).
    for (let second = 0; second < 1_800 && fiber.unsafePoll() === null; second++) {
      yield* TestClock.adjust("1 second")
    }
    yield* Fiber.join(fiber)
    return { minutes: (yield* Clock.currentTimeMillis) / 60_000, refused }
  })

describe("adaptive limits without rate-limit headers", () => {
  it.effect(
    "configured 3x too high: the batch finishes within 1.1x of the time the quota allows, with few 429s",
    () =>
      Effect.gen(function*() {
        // The quota's bucket starts full: 60 at once, then one a second.
        const allowedMinutes = (requests - quotaPerMinute) / quotaPerMinute
        const tooHigh = yield* batch(3 * quotaPerMinute)
        expect(tooHigh.minutes).toBeLessThanOrEqual(1.1 * allowedMinutes)
        // 3.05 minutes for the quota's 3, and 8 429s (with the limits spiralling down: 5.3 minutes).
        expect(tooHigh.refused).toBeLessThanOrEqual(0.05 * requests)
      }),
    60_000
  )

  it.effect("configured right: no 429 and the quota's own time", () =>
    Effect.gen(function*() {
      const right = yield* batch(quotaPerMinute)
      expect(right.refused).toBe(0)
      expect(right.minutes).toBeLessThanOrEqual((requests - quotaPerMinute) / quotaPerMinute + 0.2)
    }), 60_000)
})

describe("estimates short of what the provider counts", () => {
  const prompt = "Name the lighthouse keeper, the harbour master and the priest of St. Brendan's."
  const maxOutputTokens = 50
  // The provider counts the prompt whole; the caller's tokenizer sees a tenth less (framing, formats).
  const counted = Content.countTokens(prompt)
  const estimated = Math.floor(0.9 * counted)
  const perMinute = 60
  const tokensPerMinute = perMinute * (counted + maxOutputTokens)

  /**
   * `requests` calls, 16 at a time, through a limiter configured at the quota, which tokens bind (60 calls a
   * minute); each reconciled with the usage the provider reported, and its 429 pausing the key, as the engine does. When the batch ended, how many
   * 429s it met, and the scale the key learned.
   */
  const batch = (adaptive: boolean) =>
    Effect.gen(function*() {
      const limiter = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(Effect.provide(
        ProviderRateLimiter.layerMemory({
          quotas: { openai: { requestsPerMinute: 1_000, tokensPerMinute, maxConcurrent: 5 } },
          queueTimeout: "1 day",
          adaptive
        })
      ))
      const simulator = InProcess.make({
        quotas: { openai: { requestsPerMinute: 1_000, tokensPerMinute } },
        faults: { latencyMs: 2_000 },
        onResponse: () => Effect.void
      })
      let refused = 0
      const one = Effect.gen(function*() {
        const model = yield* simulator.languageModel("openai", "gpt-4.1", { maxOutputTokens })
        while (true) {
          const outcome = yield* Effect.either(limiter.withAdmission(
            target,
            { inputTokens: estimated, outputTokens: maxOutputTokens },
            (admission) =>
              Effect.flatMap(Clock.currentTimeMillis, (nowMillis) =>
                LanguageModel.generateText({ prompt }).pipe(
                  Effect.provideService(LanguageModel.LanguageModel, model),
                  Effect.mapError((error) => Classify.classify(error, { ...target, nowMillis })),
                  Effect.tap((response) =>
                    admission.reconcile({
                      inputTokens: response.usage.inputTokens ?? 0,
                      outputTokens: response.usage.outputTokens ?? 0
                    })
                  ),
                  Effect.tapError((error) =>
                    error._tag === "RateLimitError" && !error.local
                      ? limiter.pause(target, error.retryAfterMs ?? 1_000)
                      : Effect.void
                  )
                ))
          ))
          if (outcome._tag === "Right") return
          const error = outcome.left
          if (error._tag !== "RateLimitError" || error.local) return yield* Effect.dieMessage(error.message)
          refused++
          yield* Effect.sleep(error.retryAfterMs ?? 1_000)
        }
      })
      const fiber = yield* Effect.fork(
        // As the CLI's batch does: a few generations at a time, each arriving when one ends.
        Effect.forEach(Array.from({ length: requests }), () => one, { concurrency: 16, discard: true })
      )
      for (let second = 0; second < 1_800 && fiber.unsafePoll() === null; second++) {
        yield* TestClock.adjust("1 second")
      }
      yield* Fiber.join(fiber)
      const [key] = yield* limiter.snapshot
      return { minutes: (yield* Clock.currentTimeMillis) / 60_000, refused, limits: key!.quota }
    })

  it.effect(
    "learned from the usage reported: no 429 at the quota's edge, and the quota's own time",
    () =>
      Effect.gen(function*() {
        const allowedMinutes = (requests - perMinute) / perMinute
        const learning = yield* batch(true)
        expect(learning.refused).toBe(0)
        expect(learning.limits.tokensPerMinute).toBe(tokensPerMinute)
        expect(learning.minutes).toBeLessThanOrEqual(allowedMinutes + 0.1)
      }),
    60_000
  )

  it.effect(
    "without adaptive limits the estimate is taken as it is: the provider refuses at the edge",
    () =>
      Effect.gen(function*() {
        const asEstimated = yield* batch(false)
        expect(asEstimated.refused).toBeGreaterThan(0)
      }),
    60_000
  )
})
