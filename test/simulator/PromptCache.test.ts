/**
 * The simulator's prompt caches, as the providers keep them: OpenAI's automatic prefix (from 1,024 tokens, in
 * steps of 128, 5 minutes), Anthropic's breakpoints (the model's minimum, the time to live); and the in-process
 * face, in virtual time, reporting them through the engine.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as TestClock from "effect/TestClock"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import type * as Providers from "../../src/Providers.js"
import * as InProcess from "../../src/simulator/InProcess.js"
import * as PromptCache from "../../src/simulator/PromptCache.js"
import { fakeEngine } from "../utils/engine.js"

/** A text of exactly `tokens` o200k tokens (" word" is one token). */
const words = (tokens: number) => "word" + " word".repeat(tokens - 1)

describe("PromptCache", () => {
  it("OpenAI: the longest shared prefix, from 1,024 tokens, in steps of 128, for 5 minutes", () => {
    const cache = PromptCache.make()
    const prefix = words(2_000)
    expect(cache.openai("k", "gpt-4.1", `${prefix} first`, 0).readTokens).toBe(0)
    expect(cache.openai("k", "gpt-4.1", `${prefix} second`, 1_000).readTokens).toBe(1_920)
    // Another model, another key: caches of their own.
    expect(cache.openai("k", "gpt-4.1-mini", `${prefix} third`, 2_000).readTokens).toBe(0)
    expect(cache.openai("other", "gpt-4.1", `${prefix} third`, 2_000).readTokens).toBe(0)
    // Under the minimum, nothing.
    const short = words(900)
    cache.openai("k", "gpt-4.1", `${short} a`, 3_000)
    expect(cache.openai("k", "gpt-4.1", `${short} b`, 4_000).readTokens).toBe(0)
    // Five minutes after the last use, gone.
    expect(cache.openai("k", "gpt-4.1", `${prefix} fourth`, 1_000 + 5 * 60_000 + 1).readTokens).toBe(0)
  })

  it("Anthropic: through the breakpoint, written then read within its time to live, from the model's minimum", () => {
    const cache = PromptCache.make()
    const text = words(2_000)
    const breakpoint = { prefix: text, text, ttlMillis: 300_000 }
    expect(cache.anthropic("k", "claude-sonnet-4-5", breakpoint, 0)).toEqual({ readTokens: 0, writtenTokens: 2_000 })
    expect(cache.anthropic("k", "claude-sonnet-4-5", breakpoint, 299_999)).toEqual({
      readTokens: 2_000,
      writtenTokens: 0
    })
    // A hit refreshed it: still there five minutes after the first write.
    expect(cache.anthropic("k", "claude-sonnet-4-5", breakpoint, 500_000).readTokens).toBe(2_000)
    // Claude Haiku 4.5 caches from 4,096 tokens; without a breakpoint nothing is cached.
    expect(cache.anthropic("k", "claude-haiku-4-5", breakpoint, 0)).toEqual(PromptCache.noCacheUse)
    expect(cache.anthropic("k", "claude-sonnet-4-5", undefined, 0)).toEqual(PromptCache.noCacheUse)
  })
})

describe("the in-process face caches, in virtual time", () => {
  for (const [provider, model] of [["openai", "gpt-4.1"], ["anthropic", "claude-sonnet-4-5"]] as const) {
    it.effect(`${provider}: the second generation over a project reads the prefix, a third 10 minutes later writes again`, () => {
      const simulator = InProcess.make()
      return Effect.gen(function*() {
        const request = { projectId: "novel", userPrompt: "What happens next?", provider, model }
        const first = yield* PlotGeneration.generate(request)
        const second = yield* PlotGeneration.generate({ ...request, userPrompt: "And then?" })
        yield* TestClock.adjust("10 minutes")
        const third = yield* PlotGeneration.generate(request)
        expect(first.usage.cachedInputTokens).toBeUndefined()
        expect(second.usage.cachedInputTokens).toBeGreaterThan(1_024)
        expect(second.usage.cachedInputTokens).toBeLessThan(second.usage.inputTokens)
        expect(second.estimatedCostUsd!).toBeLessThan(first.estimatedCostUsd!)
        expect(third.usage.cachedInputTokens).toBeUndefined()
        if (provider === "anthropic") {
          expect([first.usage.cacheWriteTokens, second.usage.cacheWriteTokens]).toEqual([
            second.usage.cachedInputTokens,
            undefined
          ])
        }
      }).pipe(Effect.provide(
        fakeEngine({
          [provider]: (m: string, p: Providers.ModelParameters) => simulator.languageModel(provider, m, p)
        })
      ))
    })
  }
})

describe("the limiter counts what Anthropic counts", () => {
  it.effect("a call expected to read the project's prefix from the cache reserves only the rest of its input", () => {
    const simulator = InProcess.make()
    return Effect.gen(function*() {
      const request = {
        projectId: "novel",
        userPrompt: "What happens next?",
        provider: "anthropic" as const,
        model: "claude-sonnet-4-5"
      }
      const first = yield* PlotGeneration.generate(request)
      // 4,000 input tokens a minute: the first call's 2,600 leave too little for a second whole prompt, but the
      // second reads its prefix from the cache, which Anthropic does not count: it is admitted at once.
      const second = yield* Effect.fork(PlotGeneration.generate({ ...request, userPrompt: "And then?" }))
      yield* TestClock.adjust("1 minute")
      const result = yield* Fiber.join(second)
      expect(first.usage.cacheWriteTokens).toBeGreaterThan(2_000)
      expect(result.usage.cachedInputTokens).toBe(first.usage.cacheWriteTokens)
      expect(result.durationMs).toBe(0)
    }).pipe(Effect.provide(
      fakeEngine({ anthropic: (m, p) => simulator.languageModel("anthropic", m, p) }, {
        limiter: ProviderRateLimiter.layerMemory({
          quotas: {
            anthropic: {
              requestsPerMinute: 1_000,
              inputTokensPerMinute: 4_000,
              outputTokensPerMinute: 1_000_000,
              maxConcurrent: 5
            }
          }
        })
      })
    ))
  })
})
