/**
 * Anthropic does not count prompt-cache reads against its input tokens per minute, so the engine reserves a call's
 * input less the prefix it expects to read from the cache. A call that then fails without being billed is charged
 * what was reserved for it, not the whole prompt.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Alerts from "../../src/Alerts.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as RetryPolicy from "../../src/RetryPolicy.js"
import { httpError, sampleOutlineJson } from "../utils/FakeModel.js"
import { sampleProject } from "../utils/fixtures.js"

const request = {
  projectId: "novel",
  userPrompt: "What happens at the wedding?",
  provider: "anthropic" as const,
  model: "claude-haiku-4-5"
}

/** The input tokens per minute left on the model's key. */
const inputTokensLeft = (limiter: ProviderRateLimiter.Service) =>
  Effect.map(limiter.snapshot, (keys) => keys.find((key) => key.key.includes("claude-haiku-4-5"))!.available.itpm!)

describe("a failed call's reservation, with the prompt cache", () => {
  it.effect("is charged what was reserved for it: the prompt less the prefix expected from the cache", () =>
    Effect.gen(function*() {
      const limiter = yield* ProviderRateLimiter.makeMemory()
      const seen: Array<number> = []
      // The first call reads 2,000 tokens of the project's prefix from the cache; the second, while the limiter holds
      // its reservation, notes what is left, then fails with a 500 before the provider billed anything.
      const model = LanguageModel.make({
        generateText: () =>
          seen.length === 0
            ? Effect.sync((): Array<Response.PartEncoded> => {
              seen.push(0)
              return [
                { type: "text", text: sampleOutlineJson },
                {
                  type: "finish",
                  reason: "stop",
                  usage: { inputTokens: 300, outputTokens: 50, totalTokens: 350, cachedInputTokens: 2_000 }
                }
              ]
            })
            : Effect.flatMap(inputTokensLeft(limiter), (left) => {
              seen.push(left)
              return Effect.fail(httpError(500, { type: "error", error: { type: "api_error", message: "Internal" } }))
            }),
        streamText: () => Effect.dieMessage("not streamed") as never
      })
      const engine = yield* PlotGeneration.make({ retryPolicy: { ...RetryPolicy.defaults, maxAttempts: 1 } }).pipe(
        Effect.provide(Providers.layerModels({ anthropic: () => model })),
        Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
        Effect.provide(Layer.succeed(ProviderRateLimiter.ProviderRateLimiter, limiter)),
        Effect.provide(Alerts.layerDisabled)
      )
      const first = yield* engine.generate(request)
      expect(first.usage.cachedInputTokens).toBe(2_000)
      const before = yield* inputTokensLeft(limiter)
      const failed = yield* Effect.exit(engine.generate(request, { useFallback: false }))
      expect(failed._tag).toBe("Failure")
      const during = seen[1]!
      // The reservation left the cached prefix out (the prompt is some 2,900 tokens), and the failure charged no more.
      expect(before - during).toBeGreaterThan(0)
      expect(before - during).toBeLessThan(1_500)
      expect(yield* inputTokensLeft(limiter)).toBe(during)
    }))
})
