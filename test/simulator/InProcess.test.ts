/**
 * The in-process simulator's faults as a client sees them, in virtual time: the engine over it meets a fault without
 * an error answer (a hang, a reset, a broken or silent stream) as it meets it from the HTTP simulator through the
 * real clients (`test/integration/faults.test.ts`): a timeout, a network error, a server error. Before, each was an
 * HTTP 500 at once.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { GenerationEvent } from "../../src/Domain.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import type * as Faults from "../../src/simulator/Faults.js"
import * as InProcess from "../../src/simulator/InProcess.js"
import { fakeEngine, simulatorModels } from "../utils/engine.js"

/** Generates once over an in-process simulator whose first answer is `fault`: what happened, and when. */
const generateThrough = (fault: Faults.FaultKind, streamed: boolean) => {
  const simulator = InProcess.make({ seed: 3 })
  simulator.plan.script("in-process", [fault, "ok"])
  const engine = fakeEngine(simulatorModels(simulator))
  return Effect.gen(function*() {
    const generation = yield* PlotGeneration.PlotGeneration
    const request = { projectId: "novel", userPrompt: "What happens next?", provider: "openai" as const }
    const start = yield* Clock.currentTimeMillis
    const told: Array<readonly [number, GenerationEvent]> = []
    const tell = (event: GenerationEvent) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => told.push([at - start, event])))
    const fiber = yield* Effect.fork(
      streamed
        ? Stream.runForEach(generation.generateStream(request), tell)
        : Effect.flatMap(generation.generate(request), (result) => tell({ _tag: "Completed", result }))
    )
    yield* TestClock.adjust("30 minutes")
    yield* Fiber.join(fiber)
    const [completedAt, completed] = told.at(-1)!
    const result = completed._tag === "Completed" ? completed.result : undefined
    return {
      // The requests the simulator answered, when the result came, the model it came from, and its retries.
      ended: [simulator.counts.requests, completedAt, result?.isTemplate, result?.model, result?.retryCount],
      // Streamed, what the engine told of it.
      retried: told.flatMap(([at, event]) => event._tag === "Retrying" ? [[at, event.errorType, event.delayMs]] : []),
      fellBack: told.flatMap(([at, event]) => event._tag === "Fallback" ? [[at, event.reason]] : [])
    }
  }).pipe(Effect.provide(engine), Effect.withRandom(Random.fixed([0.5])))
}

describe("InProcess faults without an error answer", () => {
  it.effect("a reset is a network error, retried after its 3 s", () =>
    Effect.gen(function*() {
      const plain = yield* generateThrough("reset", false)
      const streamed = yield* generateThrough("reset", true)
      expect(plain.ended).toEqual([2, 3_000, false, "gpt-4.1-mini", 1])
      expect(streamed.ended).toEqual(plain.ended)
      expect(streamed.retried).toEqual([[0, "network_error", 3_000]])
    }))

  it.effect("a hang costs the attempt timeout (streamed, the first-token limit), then the other provider answers", () =>
    Effect.gen(function*() {
      expect((yield* generateThrough("hang", false)).ended).toEqual([2, 60_000, false, "claude-haiku-4-5", 1])
      const streamed = yield* generateThrough("hang", true)
      expect(streamed.ended).toEqual([2, 30_000, false, "claude-haiku-4-5", 1])
      expect([streamed.retried, streamed.fellBack]).toEqual([[], [[30_000, "timeout"]]])
    }))

  it.effect("a stream gone silent midway is cut at the idle limit; not streamed, it is a hang", () =>
    Effect.gen(function*() {
      expect((yield* generateThrough("stall", true)).fellBack).toEqual([[20_000, "timeout"]])
      expect((yield* generateThrough("stall", false)).ended).toEqual([2, 60_000, false, "claude-haiku-4-5", 1])
    }))

  it.effect("a first token later than its limit is cut there; not streamed, an answer later than the attempt's", () =>
    Effect.gen(function*() {
      expect((yield* generateThrough("slow_first_token", true)).fellBack).toEqual([[30_000, "timeout"]])
      expect((yield* generateThrough("slow_first_token", false)).ended).toEqual([
        2,
        60_000,
        false,
        "claude-haiku-4-5",
        1
      ])
    }))

  it.effect("a body the client cannot read, a stream cut short or broken by an error event: a server error, retried", () =>
    Effect.gen(function*() {
      for (const fault of ["malformed_json", "truncated_sse", "missing_terminator", "stream_error"] as const) {
        const plain = yield* generateThrough(fault, false)
        const streamed = yield* generateThrough(fault, true)
        expect([fault, plain.ended]).toEqual([fault, [2, 5_000, false, "gpt-4.1-mini", 1]])
        expect([fault, streamed.ended, streamed.retried]).toEqual([fault, plain.ended, [[0, "server_error", 5_000]]])
      }
    }))
})
