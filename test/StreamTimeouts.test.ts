/**
 * A stream that is silent too long is a timeout, not a wait for the attempt's whole minute: before it begins
 * writing (the first-token limit, 30 s by default; not for a reasoning model, which thinks in silence) and between
 * parts once it has (the idle limit, 20 s). Exact in virtual time.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Domain from "../src/Domain.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import { fakeEngine } from "./utils/engine.js"
import { type Answer, type Call, sampleOutlineJson, scripted, slow, text } from "./utils/FakeModel.js"

const engine = (answers: ReadonlyArray<Answer>, calls: Array<Call>) => fakeEngine({ openai: scripted(answers, calls) })

const on = (model: string): Domain.PlotRequestInput => ({
  projectId: "novel",
  userPrompt: "What happens next?",
  provider: "openai",
  model
})

/** Streams a generation to its end in virtual time: the retries told, the result, and when each call was made. */
const streamed = (request: Domain.PlotRequestInput) =>
  Effect.gen(function*() {
    const events: Array<Domain.GenerationEvent> = []
    const fiber = yield* PlotGeneration.generateStream(request).pipe(
      Stream.runForEach((event) => Effect.sync(() => events.push(event))),
      Effect.fork
    )
    yield* TestClock.adjust("5 minutes")
    yield* Fiber.join(fiber)
    const completed = events.find((e) => e._tag === "Completed")
    return {
      retries: events.flatMap((e) => (e._tag === "Retrying" ? [[e.errorType, e.delayMs] as const] : [])),
      result: completed?._tag === "Completed" ? completed.result : undefined
    }
  }).pipe(Effect.withRandom(Random.fixed([0.5])))

const ok = text(sampleOutlineJson)

describe("a stream silent too long", () => {
  it.effect("that writes nothing for 30 s is a timeout, retried after 2 s", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result, retries } = yield* streamed(on("gpt-4.1"))
      expect(calls.map((c) => c.at)).toEqual([0, 32_000])
      expect(retries).toEqual([["timeout", 2_000]])
      expect([result?.isTemplate, result?.durationMs]).toEqual([false, 32_000])
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 31_000, 0), ok], calls)))
  })

  it.effect("that goes silent for 20 s once it has begun writing is a timeout", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { retries } = yield* streamed(on("gpt-4.1"))
      // First text at 1 s, then silence: the idle limit ends it at 21 s; the retry is at 23 s.
      expect(calls.map((c) => c.at)).toEqual([0, 23_000])
      expect(retries).toEqual([["timeout", 2_000]])
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 1_000, 25_000), ok], calls)))
  })

  it.effect("within both limits, is waited for", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* streamed(on("gpt-4.1"))
      expect(calls).toHaveLength(1)
      expect(result?.durationMs).toBe(48_000)
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 29_000, 19_000)], calls)))
  })

  it.effect("a reasoning model may think in silence before it writes", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* streamed(on("gpt-5"))
      expect(calls).toHaveLength(1)
      expect([result?.model, result?.durationMs]).toEqual(["gpt-5", 41_000])
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 40_000, 1_000)], calls)))
  })

  it.effect("a call that is not streamed has only the attempt's limit", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(PlotGeneration.generate(on("gpt-4.1")))
      yield* TestClock.adjust("5 minutes")
      const result = yield* Fiber.join(fiber)
      expect(calls).toHaveLength(1)
      expect(result.durationMs).toBe(56_000)
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 31_000, 25_000)], calls)))
  })
})
