/**
 * Refusals through the engine in virtual time, over the simulator's in-process face: each provider's refusal, whole
 * and streamed, moves the generation at once to the other provider's model of the same tier (never a retry on the
 * model that declined, no delay); `onRefusal: "fail"` ends it with the typed `RefusalError`.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import type * as Domain from "../../src/Domain.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as RetryPolicy from "../../src/RetryPolicy.js"
import * as InProcess from "../../src/simulator/InProcess.js"
import { fakeEngine, simulatorModels } from "../utils/engine.js"

const engineWith = (simulator: InProcess.InProcessSimulator, policy: RetryPolicy.Policy = RetryPolicy.defaults) =>
  fakeEngine(simulatorModels(simulator), { options: { retryPolicy: policy } })

const request = (provider: Domain.ProviderName, marker: string) => ({
  projectId: "novel",
  userPrompt: `What the smuggler did to the informer, in full. ${marker}`,
  provider
})

const generate = (input: Domain.PlotRequestInput, streamed: boolean) =>
  Effect.flatMap(PlotGeneration.PlotGeneration, (engine) =>
    streamed
      ? Effect.flatMap(Stream.runCollect(engine.generateStream(input)), (events) => {
        const last = [...events].at(-1)
        return last?._tag === "Completed" ? Effect.succeed(last.result) : Effect.dieMessage("no Completed event")
      })
      : engine.generate(input))

describe("refusals in virtual time", () => {
  for (const streamed of [false, true]) {
    for (const [declining, other] of [["openai", "anthropic"], ["anthropic", "openai"]] as const) {
      it.effect(`${declining} declining (${streamed ? "streamed" : "whole"}): one call to ${other}, at once`, () => {
        const simulator = InProcess.make({})
        return Effect.gen(function*() {
          const result = yield* generate(request(declining, `[simulate refusal: ${declining}]`), streamed)
          expect(result.provider).toBe(other)
          expect(result.isTemplate).toBe(false)
          expect(result.durationMs).toBe(0)
          expect(simulator.counts.requests).toBe(2)
        }).pipe(Effect.provide(engineWith(simulator)))
      })
    }
  }

  it.effect("onRefusal fail: the RefusalError at once, one call", () => {
    const simulator = InProcess.make({})
    return Effect.gen(function*() {
      const error = yield* Effect.flip(generate(request("anthropic", "[simulate refusal]"), false))
      expect(error).toMatchObject({ _tag: "RefusalError", provider: "anthropic", kind: "answer", reason: "refusal" })
      expect(simulator.counts.requests).toBe(1)
    }).pipe(Effect.provide(engineWith(simulator, { ...RetryPolicy.defaults, onRefusal: "fail" })))
  })
})
