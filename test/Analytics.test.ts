/**
 * Each generation's metrics reach the host's analytics (and one info log line), whether it ended in a plot, a
 * template or a failure; a defect of the host's tracking never fails the generation.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as Analytics from "../src/Analytics.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import { fakeEngine } from "./utils/engine.js"
import { type Answer, fail, httpError, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"

const engine = (answers: ReadonlyArray<Answer>, analytics: Layer.Layer<never> | Layer.Layer<Analytics.Analytics>) =>
  fakeEngine({ openai: scripted(answers) }).pipe(Layer.provide(analytics))

const request = {
  projectId: "novel",
  userPrompt: "What happens next?",
  provider: "openai" as const,
  model: "gpt-4.1",
  kind: "scene_beats" as const
}
const unauthorized = fail(httpError(401, {
  error: { message: "Incorrect API key provided", type: "invalid_request_error", param: null, code: "invalid_api_key" }
}))
const serverError = fail(httpError(500, { error: { message: "boom", type: "server_error", param: null, code: null } }))

const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(Effect.either(effect))
    yield* TestClock.adjust("10 minutes")
    return yield* Fiber.join(fiber)
  }).pipe(Effect.withRandom(Random.fixed([0.5])))

describe("Analytics", () => {
  it.effect("receives every generation: a plot, a template, a failure", () => {
    const reports: Array<Analytics.GenerationReport> = []
    const collect = Analytics.layer((report) => Effect.sync(() => void reports.push(report)))
    return Effect.gen(function*() {
      yield* run(PlotGeneration.generate(request)).pipe(Effect.provide(engine([text(sampleOutlineJson)], collect)))
      yield* run(PlotGeneration.generate(request)).pipe(Effect.provide(engine([serverError], collect)))
      yield* run(PlotGeneration.generate(request)).pipe(Effect.provide(engine([unauthorized], collect)))
      expect(reports.map((r) => [r.event, r.outcome, r.kind, r.projectId, r.metrics.modelUsed, r.metrics.errorType]))
        .toEqual([
          ["plot_generation", "success", "scene_beats", "novel", "gpt-4.1", undefined],
          ["plot_generation", "template", "scene_beats", "novel", "template", "server_error"],
          ["plot_generation", "failure", "scene_beats", "novel", "gpt-4.1", "auth_error"]
        ])
      expect(reports[0]!.metrics).toMatchObject({ promptTokens: 100, completionTokens: 50, isTemplate: false })
      // The server errors were retried three times before the template.
      expect(reports[1]!.metrics.retryCount).toBe(3)
      // Refused before any output: nothing billed.
      expect(reports[2]!.metrics.estimatedCostUSD).toBe(0)
    })
  })

  it.effect("logs each generation's metrics at info level, with or without analytics", () => {
    const lines: Array<{ message: unknown; annotations: Record<string, unknown> }> = []
    const capture = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, message }) => {
        lines.push({ message, annotations: Object.fromEntries(annotations) })
      })
    )
    return Effect.gen(function*() {
      yield* run(PlotGeneration.generate(request)).pipe(Effect.provide(engine([text(sampleOutlineJson)], Layer.empty)))
      const logged = lines.filter((line) =>
        line.message === "Plot generation metrics" ||
        (Array.isArray(line.message) && line.message[0] === "Plot generation metrics")
      )
      expect(logged).toHaveLength(1)
      expect(logged[0]!.annotations).toMatchObject({
        outcome: "success",
        kind: "scene_beats",
        component: "plotGenerationService"
      })
    }).pipe(Effect.provide(capture))
  })

  it.effect("a defect in the host's tracking is logged, and the generation still succeeds", () =>
    Effect.gen(function*() {
      const outcome = yield* run(PlotGeneration.generate(request)).pipe(
        Effect.provide(engine([text(sampleOutlineJson)], Analytics.layer(() => Effect.die("analytics is down"))))
      )
      expect(outcome._tag).toBe("Right")
    }))
})
