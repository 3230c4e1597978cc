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
import * as Errors from "../src/Errors.js"
import * as CallModule from "../src/generation/Call.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import { fakeEngine } from "./utils/engine.js"
import { type Answer, type Call, sampleOutlineJson, scripted, slow, text } from "./utils/FakeModel.js"

const engine = (answers: ReadonlyArray<Answer>, calls: Array<Call>, retryPolicy?: RetryPolicy.Policy) =>
  fakeEngine({ openai: scripted(answers, calls) }, { options: retryPolicy === undefined ? {} : { retryPolicy } })

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

  it.effect("that keeps within its silence limits is still held to the attempt timeout", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { retries } = yield* streamed(on("gpt-4.1"))
      // Text at 1 s, then 70 s of silence the idle limit (90 s) allows: the attempt's 60 s end it; retried at 62 s.
      expect(calls.map((c) => c.at)).toEqual([0, 62_000])
      expect(retries).toEqual([["timeout", 2_000]])
    }).pipe(Effect.provide(
      engine([slow(sampleOutlineJson, 1_000, 70_000), ok], calls, {
        ...RetryPolicy.defaults,
        idleTimeout: "90 seconds"
      })
    ))
  })
})

describe("a stream's watchdog", () => {
  const limits: CallModule.StreamLimits = {
    firstToken: 30_000,
    idle: 20_000,
    total: 60_000,
    onTotal: () => new Errors.TimeoutError({ provider: "openai", model: "m", detail: "total" })
  }

  it("keeps the first-token limit until the stream writes, then the idle limit from its last part", () => {
    expect(CallModule.nextLimit(limits, { startedAt: 0, lastPartAt: 0, writing: false })).toEqual({
      at: 30_000,
      limit: "first-token"
    })
    expect(CallModule.nextLimit(limits, { startedAt: 0, lastPartAt: 5_000, writing: true })).toEqual({
      at: 25_000,
      limit: "idle"
    })
  })

  it("ends the stream at the whole call's limit when that comes first, or when it has no silence limit", () => {
    expect(CallModule.nextLimit(limits, { startedAt: 0, lastPartAt: 50_000, writing: true })).toEqual({
      at: 60_000,
      limit: "total"
    })
    expect(
      CallModule.nextLimit({ ...limits, firstToken: undefined }, { startedAt: 0, lastPartAt: 0, writing: false })
    ).toEqual({ at: 60_000, limit: "total" })
  })

  it("looks again within the idle limit before the stream writes: its first part may bring the limit in", () => {
    expect(CallModule.recheckAfter(limits, { startedAt: 0, lastPartAt: 0, writing: false }, 30_000)).toBe(20_000)
    expect(CallModule.recheckAfter(limits, { startedAt: 0, lastPartAt: 0, writing: true }, 30_000)).toBe(30_000)
  })
})
