/**
 * A provider 429 that names the limit it reached, through the engine in virtual time over the simulator's
 * in-process face: the limiter cuts that limit only, and the generation goes on once the provider's wait is over.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../../src/Alerts.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as InProcess from "../../src/simulator/InProcess.js"
import { sampleProject } from "../utils/fixtures.js"

const configured = {
  requestsPerMinute: 1_000,
  inputTokensPerMinute: 40_000,
  outputTokensPerMinute: 100_000,
  maxConcurrent: 5
}

describe("a 429 naming its limit, through the engine", () => {
  it.effect("Anthropic's input tokens per minute: only that limit comes down", () => {
    // The provider's input budget holds one generation's prompt (2,597 tokens), not two; no rate-limit headers
    // (stripped, as some proxies do), so only the 429 tells the limiter.
    const simulator = InProcess.make({
      quotas: {
        anthropic: { requestsPerMinute: 1_000, inputTokensPerMinute: 4_000, outputTokensPerMinute: 100_000 },
        rateLimitHeaders: false
      }
    })
    return Effect.gen(function*() {
      const engine = yield* PlotGeneration.PlotGeneration
      const limiter = yield* ProviderRateLimiter.ProviderRateLimiter
      const generations = yield* Effect.fork(Effect.all(
        ["the cloth", "the ledger"].map((what) =>
          engine.generate({ projectId: "novel", userPrompt: `What does Mara do with ${what}?`, provider: "anthropic" })
        ),
        { concurrency: "unbounded" }
      ))
      // The second waits out the provider's retry-after, then goes.
      yield* TestClock.adjust("30 seconds")
      const results = yield* Fiber.join(generations)
      expect(results.map((result) => result.isTemplate)).toEqual([false, false])
      expect(simulator.counts.limited).toBe(1)
      const [key] = yield* limiter.snapshot
      // A tenth off the input tokens (the minute used less than half of them); requests and output as configured
      // (a 429 naming no limit would have cut them too, to 900 and 90,000).
      expect(key?.quota).toEqual({ ...configured, inputTokensPerMinute: 36_000 })
    }).pipe(Effect.provide(
      PlotGeneration.layer().pipe(
        Layer.provide(Providers.layerModels({
          anthropic: (model, parameters) => simulator.languageModel("anthropic", model, parameters)
        })),
        Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
        Layer.provideMerge(ProviderRateLimiter.layerMemory({ quotas: { anthropic: configured } })),
        Layer.provide(Alerts.layerDisabled)
      )
    ))
  })
})
