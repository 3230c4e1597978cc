/**
 * The cost of a generation is what the provider billed for every attempt: an unreadable reply costs as much as a
 * good one, and a template that stands in for failed attempts is not free when those attempts were billed.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as ModelCatalog from "../src/ModelCatalog.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import type * as Providers from "../src/Providers.js"
import { fakeEngine } from "./utils/engine.js"
import { type Answer, fail, httpError, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { counterTotal } from "./utils/simulated.js"

const engine = (answers: ReadonlyArray<Answer>) => fakeEngine({ openai: scripted(answers) })

const request = {
  projectId: "novel",
  userPrompt: "What happens next?",
  provider: "openai" as const,
  model: "gpt-4.1-mini"
}
const mini = Option.getOrThrow(ModelCatalog.find(ModelCatalog.defaultCatalog, "openai", "gpt-4.1-mini"))
const costOf = (inputTokens: number, outputTokens: number) => ModelCatalog.cost(mini, { inputTokens, outputTokens })!

const generate = Effect.gen(function*() {
  const fiber = yield* Effect.fork(PlotGeneration.generate(request))
  yield* TestClock.adjust("10 minutes")
  return yield* Fiber.join(fiber)
}).pipe(Effect.withRandom(Random.fixed([0.5])))

const unreadable = text("I'm sorry, here is a long answer that is not an outline. ".repeat(200), {
  inputTokens: 2_000,
  outputTokens: 4_000
})

describe("the cost of a generation", () => {
  it.effect("an unparsable 4,000-token reply, then a good one: the cost includes the failed attempt", () =>
    Effect.gen(function*() {
      const wastedBefore = yield* counterTotal("plot_engine_wasted_cost_usd_total", { model: "gpt-4.1-mini" })
      const result = yield* generate
      expect(result.isTemplate).toBe(false)
      expect(result.attempts.map((a) => [a.model, a.outcome, a.usage.outputTokens, a.estimated])).toEqual([
        ["gpt-4.1-mini", "parse_error", 4_000, false],
        ["gpt-4.1-mini", "success", 50, false]
      ])
      expect(result.estimatedCostUsd).toBeCloseTo(costOf(2_000, 4_000) + costOf(2_000, 50), 12)
      // The usage of the result is the plot's own; the wasted cost is counted apart.
      expect(result.usage.outputTokens).toBe(50)
      const wasted = (yield* counterTotal("plot_engine_wasted_cost_usd_total", { model: "gpt-4.1-mini" })) -
        wastedBefore
      expect(wasted).toBeCloseTo(costOf(2_000, 4_000), 12)
    }).pipe(Effect.provide(engine([unreadable, text(sampleOutlineJson, { inputTokens: 2_000, outputTokens: 50 })]))))

  it.effect("a template after billed failures costs what those failures were billed", () =>
    Effect.gen(function*() {
      const result = yield* generate
      expect(result.isTemplate).toBe(true)
      // The parse rule retries once: two unreadable replies, both billed.
      expect(result.attempts.map((a) => a.outcome)).toEqual(["parse_error", "parse_error"])
      expect(result.estimatedCostUsd).toBeCloseTo(2 * costOf(2_000, 4_000), 12)
    }).pipe(Effect.provide(engine([unreadable]))))

  it.effect("failures the provider does not bill (a 500 before any output) cost nothing", () =>
    Effect.gen(function*() {
      const result = yield* generate
      expect(result.attempts.map((a) => a.outcome)).toEqual(["success"])
      expect(result.estimatedCostUsd).toBeCloseTo(costOf(100, 50), 12)
    }).pipe(Effect.provide(engine([
      fail(httpError(500, { error: { message: "boom", type: "server_error", param: null, code: null } })),
      text(sampleOutlineJson)
    ]))))
})

// ---------------------------------------------------------------------------------------------------------------
// Usage as billed, with the prompt cache
// ---------------------------------------------------------------------------------------------------------------

/** A model whose answer reports the usage given, with Anthropic's cache writes in the finish part's metadata. */
const reporting = (
  usage: { inputTokens: number; outputTokens: number; cachedInputTokens?: number },
  cacheWrites?: number
) =>
() =>
  LanguageModel.make({
    generateText: () =>
      // The finish part carries only the field of Anthropic's usage metadata the engine reads.
      Effect.succeed([
        { type: "text", text: sampleOutlineJson },
        {
          type: "finish",
          reason: "stop",
          usage: { ...usage, totalTokens: usage.inputTokens + usage.outputTokens },
          ...(cacheWrites === undefined
            ? {}
            : { metadata: { anthropic: { usage: { cache_creation_input_tokens: cacheWrites } } } })
        }
      ] as unknown as Array<Response.PartEncoded>),
    streamText: () => Stream.empty
  })

const usageEngine = (provider: "openai" | "anthropic", model: Providers.ModelFactory) =>
  fakeEngine({ [provider]: model })

describe("usage as billed, with the prompt cache", () => {
  it.effect("OpenAI: cached tokens are part of the input, billed at the cached price", () =>
    Effect.gen(function*() {
      const result = yield* PlotGeneration.generate(request)
      expect(result.usage).toMatchObject({ inputTokens: 3_000, cachedInputTokens: 2_048, outputTokens: 500 })
      // gpt-4.1-mini: 952 at $0.40, 2,048 cached at $0.10, 500 out at $1.60 a million.
      expect(result.estimatedCostUsd).toBeCloseTo((952 * 0.4 + 2_048 * 0.1 + 500 * 1.6) / 1e6, 12)
    }).pipe(
      Effect.provide(
        usageEngine("openai", reporting({ inputTokens: 3_000, outputTokens: 500, cachedInputTokens: 2_048 }))
      )
    ))

  it.effect("Anthropic: cache reads and writes come on top of the input it reports, each at its price", () =>
    Effect.gen(function*() {
      const result = yield* PlotGeneration.generate({ ...request, provider: "anthropic", model: "claude-haiku-4-5" })
      // Anthropic reports 200 uncached, 4,100 read and 1,000 written apart: 5,300 input in all.
      expect(result.usage).toMatchObject({
        inputTokens: 5_300,
        cachedInputTokens: 4_100,
        cacheWriteTokens: 1_000,
        outputTokens: 500
      })
      // claude-haiku-4-5: $1 input, $0.10 read, $1.25 written, $5 output a million.
      expect(result.estimatedCostUsd).toBeCloseTo((200 * 1 + 4_100 * 0.1 + 1_000 * 1.25 + 500 * 5) / 1e6, 12)
    }).pipe(
      Effect.provide(
        usageEngine("anthropic", reporting({ inputTokens: 200, outputTokens: 500, cachedInputTokens: 4_100 }, 1_000))
      )
    ))
})
