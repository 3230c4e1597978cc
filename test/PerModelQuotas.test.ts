/**
 * Quotas are per model, as the providers enforce them: a 429 asking for a wait above the cap on one model sends
 * the chain to the next model at once, behind the engine's own rate limiter too; no path sleeps past the cap.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../src/Alerts.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import { type Call, fail, httpError, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"

/** A 429 on the model it is given to, asking for two minutes. */
const pausedTwoMinutes = fail(httpError(429, {
  error: { message: "Rate limit reached for requests", type: "requests", param: null, code: "rate_limit_exceeded" }
}, { "retry-after": "120" }))

/** Every model answers at once, except gpt-5, which refuses for two minutes. */
const models = (calls: Array<Call>): Providers.ModelFactory => (model, parameters) =>
  scripted(model === "gpt-5" ? [pausedTwoMinutes] : [text(sampleOutlineJson)], calls)(model, parameters)

const engine = (
  calls: Array<Call>,
  options: ProviderRateLimiter.Options,
  providers: ReadonlyArray<"openai" | "anthropic">
) =>
  PlotGeneration.layer().pipe(
    Layer.provide(Providers.layerModels(Object.fromEntries(providers.map((p) => [p, models(calls)])))),
    Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
    Layer.provide(ProviderRateLimiter.layerMemory(options)),
    Layer.provide(Alerts.layerDisabled)
  )

/** A 2,500-word request for OpenAI: premium, so gpt-5 first. */
const request = {
  projectId: "novel",
  userPrompt: "Outline the whole second part of the novel.",
  targetWordCount: 2_500,
  provider: "openai" as const
}

const generate = Effect.gen(function*() {
  const fiber = yield* Effect.fork(PlotGeneration.generate(request))
  yield* TestClock.adjust("10 minutes")
  return yield* Fiber.join(fiber)
}).pipe(Effect.withRandom(Random.fixed([0.5])))

describe("a 429 asking for more than the cap, behind the rate limiter", () => {
  it.effect("with a budget per model (the default): the next model at once", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const result = yield* generate
      expect(calls.map((call) => [call.model, call.at])).toEqual([["gpt-5", 0], ["gpt-4.1", 0]])
      expect([result.model, result.isTemplate, result.durationMs]).toEqual(["gpt-4.1", false, 0])
    }).pipe(Effect.provide(engine(calls, {}, ["openai"])))
  })

  it.effect("with one budget per provider: the provider's other models are refused at once, the other provider answers", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const result = yield* generate
      // gpt-4.1 and gpt-4.1-mini share the paused key: refused without a call and without a wait.
      expect(calls.map((call) => [call.model, call.at])).toEqual([["gpt-5", 0], ["claude-opus-4-1", 0]])
      expect([result.provider, result.durationMs]).toEqual(["anthropic", 0])
    }).pipe(Effect.provide(engine(calls, { keyBy: "provider" }, ["openai", "anthropic"])))
  })
})
