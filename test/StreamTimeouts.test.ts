/**
 * A stream that is silent too long is a timeout, not a wait for the attempt's whole minute: before it begins
 * writing (the first-token limit, 30 s by default; not for a reasoning model, which thinks in silence), between
 * parts once it has (the idle limit, 20 s), and while it crawls before anything can be shown (4 tokens a second
 * over 10 s windows). Each leaves the route at once: the chain's next model, never a retry of the same silent
 * route. Exact in virtual time.
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
import {
  type Answer,
  type Call,
  crawl,
  fail,
  httpError,
  sampleOutline,
  sampleOutlineJson,
  scripted,
  slow,
  text,
  unclosed
} from "./utils/FakeModel.js"

/** Both providers answering from one script (the calls in one list): a chain that is not pinned can move on. */
const engine = (answers: ReadonlyArray<Answer>, calls: Array<Call>, retryPolicy?: RetryPolicy.Policy) =>
  fakeEngine(
    { openai: scripted(answers, calls), anthropic: scripted(answers, calls) },
    { options: retryPolicy === undefined ? {} : { retryPolicy } }
  )

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
      fallbacks: events.flatMap((e) => (e._tag === "Fallback" ? [e.reason] : [])),
      result: completed?._tag === "Completed" ? completed.result : undefined
    }
  }).pipe(Effect.withRandom(Random.fixed([0.5])))

const ok = text(sampleOutlineJson)

describe("a stream silent or crawling too long", () => {
  // Not pinned: the chain has other models to move to.
  const open: Domain.PlotRequestInput = { projectId: "novel", userPrompt: "What happens next?", provider: "openai" }

  it.effect("that writes nothing for 30 s is a timeout (first-token); the next model goes at once, no retry", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { fallbacks, result, retries } = yield* streamed(open)
      expect(calls.map((c) => c.at)).toEqual([0, 30_000])
      expect(calls[1]!.model).not.toBe(calls[0]!.model)
      expect(retries).toEqual([])
      expect(fallbacks).toEqual(["timeout"])
      expect([result?.isTemplate, result?.durationMs]).toEqual([false, 30_000])
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 31_000, 0), ok], calls)))
  })

  it.effect("that goes silent for 20 s once it has begun writing is a timeout (idle), and the chain moves on", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { fallbacks } = yield* streamed(open)
      // First text at 1 s, then silence: the idle limit ends it at 21 s; the next model is called then.
      expect(calls.map((c) => c.at)).toEqual([0, 21_000])
      expect(fallbacks).toEqual(["timeout"])
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 1_000, 25_000), ok], calls)))
  })

  it.effect("that crawls before anything can be shown is a timeout (throughput) at the end of its window", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { fallbacks, result } = yield* streamed(open)
      // 8 characters (2 tokens) a second from 1 s, where 4 tokens a second are the least: the window from the first
      // part (1 s) ends at 11 s with 40 characters written, short of 160.
      expect(calls.map((c) => c.at)).toEqual([0, 11_000])
      expect(fallbacks).toEqual(["timeout"])
      expect(result?.isTemplate).toBe(false)
    }).pipe(Effect.provide(engine([crawl(sampleOutlineJson, 8), ok], calls)))
  })

  it.effect("that writes fast enough is never cut by the throughput limit", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* streamed(open)
      expect(calls).toHaveLength(1)
      expect(result?.isTemplate).toBe(false)
    }).pipe(Effect.provide(engine([crawl(sampleOutlineJson, 400)], calls)))
  })

  it.effect("on a pinned model with one deployment, the silent route is not called again: one limit, then the end", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result, retries } = yield* streamed(on("gpt-4.1"))
      expect(calls.map((c) => c.at)).toEqual([0])
      expect(retries).toEqual([])
      expect([result?.isTemplate, result?.durationMs]).toEqual([true, 30_000])
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 31_000, 0), ok], calls)))
  })

  it.effect("that finished but keeps its body open ends as finished a second later: the result, no retry", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { fallbacks, result, retries } = yield* streamed(on("gpt-4.1"))
      // The answer and its finish at 0 s; the body's end never comes: the close's grace (1 s) ends the wait for it.
      expect(calls).toHaveLength(1)
      expect([retries, fallbacks]).toEqual([[], []])
      expect([result?.isTemplate, result?.durationMs, result?.outline.title]).toEqual([
        false,
        CallModule.closeGraceMillis,
        sampleOutline.title
      ])
    }).pipe(Effect.provide(engine([unclosed(sampleOutlineJson)], calls)))
  })

  it.effect("that finished and then lost its connection before the body's end keeps its answer: nothing restarted", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const events: Array<Domain.GenerationEvent> = []
      yield* PlotGeneration.generateStream(on("gpt-4.1")).pipe(
        Stream.runForEach((event) => Effect.sync(() => events.push(event)))
      )
      expect(calls).toHaveLength(1)
      expect(events.filter((e) => e._tag === "Restarted" || e._tag === "Retrying")).toEqual([])
      const completed = events.at(-1)
      expect(completed?._tag === "Completed" && [completed.result.isTemplate, completed.result.outline.title])
        .toEqual([false, sampleOutline.title])
    }).pipe(Effect.provide(engine([unclosed(sampleOutlineJson, "transport error")], calls)))
  })

  it.effect("within both limits, is waited for", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* streamed(on("gpt-4.1"))
      expect(calls).toHaveLength(1)
      expect(result?.durationMs).toBe(48_000)
    }).pipe(Effect.provide(engine([slow(sampleOutlineJson, 29_000, 19_000)], calls)))
  })

  it.effect("with silence limits of zero, has none: only the attempt's limit", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* streamed(on("gpt-4.1"))
      expect(calls).toHaveLength(1)
      expect(result?.durationMs).toBe(57_000)
    }).pipe(Effect.provide(
      engine([slow(sampleOutlineJson, 31_000, 26_000)], calls, {
        ...RetryPolicy.defaults,
        firstTokenTimeout: "0 seconds",
        idleTimeout: "0 seconds"
      })
    ))
  })

  it.effect("whose finish lands on the attempt's limit exactly is in time, as a call that is not streamed is", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* streamed(on("gpt-4.1"))
      expect(calls).toHaveLength(1)
      expect([result?.isTemplate, result?.durationMs]).toEqual([false, 60_000])
    }).pipe(Effect.provide(
      engine([slow(sampleOutlineJson, 31_000, 29_000)], calls, {
        ...RetryPolicy.defaults,
        firstTokenTimeout: "0 seconds",
        idleTimeout: "0 seconds"
      })
    ))
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

  it.effect("that keeps within its silence limits is still held to the attempt timeout, then moves on", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { fallbacks } = yield* streamed(open)
      // Text at 1 s, then 70 s of silence the idle limit (90 s) allows: the attempt's 60 s end it; the next model
      // is called at 60 s.
      expect(calls.map((c) => c.at)).toEqual([0, 60_000])
      expect(fallbacks).toEqual(["timeout"])
    }).pipe(Effect.provide(
      engine([slow(sampleOutlineJson, 1_000, 70_000), ok], calls, {
        ...RetryPolicy.defaults,
        idleTimeout: "90 seconds"
      })
    ))
  })
})

describe("a stream cut by the generation's deadline", () => {
  it.effect("that had shown part of its outline is told void: Restarted before the end", () => {
    const calls: Array<Call> = []
    const serverError = fail(httpError(500, { error: { message: "The server had an error", type: "server_error" } }))
    return Effect.gen(function*() {
      const events: Array<Domain.GenerationEvent> = []
      const fiber = yield* PlotGeneration.generateStream(on("gpt-4.1")).pipe(
        Stream.runForEach((event) => Effect.sync(() => events.push(event))),
        Effect.fork
      )
      yield* TestClock.adjust("5 minutes")
      yield* Fiber.join(fiber)
      // A 500, the retry at 5 s shows half its outline at 6 s and then goes quiet; the deadline (12 s) ends it.
      expect(calls.map((c) => c.at)).toEqual([0, 5_000])
      const tags = events.map((e) => e._tag)
      const restarted = tags.indexOf("Restarted")
      expect(restarted).toBeGreaterThan(tags.indexOf("TextDelta"))
      expect(tags.at(-1)).toBe("Completed")
      expect(events.at(-1)).toMatchObject({ result: { isTemplate: true, durationMs: 12_000 } })
    }).pipe(Effect.provide(
      engine([serverError, slow(sampleOutlineJson, 1_000, 60_000)], calls, {
        ...RetryPolicy.defaults,
        deadline: "12 seconds",
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
    expect(CallModule.nextLimit(limits, { ...CallModule.startActivity(0), lastPartAt: 0, writing: false })).toEqual({
      at: 30_000,
      limit: "first-token"
    })
    expect(CallModule.nextLimit(limits, { ...CallModule.startActivity(0), lastPartAt: 5_000, writing: true })).toEqual({
      at: 25_000,
      limit: "idle"
    })
  })

  it("ends the stream at the whole call's limit when that comes first, or when it has no silence limit", () => {
    expect(CallModule.nextLimit(limits, { ...CallModule.startActivity(0), lastPartAt: 50_000, writing: true })).toEqual(
      {
        at: 60_000,
        limit: "total"
      }
    )
    expect(
      CallModule.nextLimit({ ...limits, firstToken: undefined }, {
        ...CallModule.startActivity(0),
        lastPartAt: 0,
        writing: false
      })
    ).toEqual({ at: 60_000, limit: "total" })
  })

  it("once the provider finished, the next limit is the body's close, a second later: reached, the call is done", () => {
    const finished = { ...CallModule.startActivity(0), lastPartAt: 5_000, writing: true, finishedAt: 5_000 }
    expect(CallModule.nextLimit(limits, finished)).toEqual({ at: 6_000, limit: "close" })
    expect(CallModule.nextLimit(limits, { ...finished, lastPartAt: 59_500, finishedAt: 59_500 })).toEqual({
      at: 60_000,
      limit: "close"
    })
  })

  it("looks again within a second, the close's grace: a part may bring the idle limit in, the finish the close", () => {
    expect(CallModule.recheckAfter(limits, { ...CallModule.startActivity(0), lastPartAt: 0, writing: false }, 30_000))
      .toBe(CallModule.closeGraceMillis)
    expect(CallModule.recheckAfter(limits, { ...CallModule.startActivity(0), lastPartAt: 0, writing: true }, 30_000))
      .toBe(CallModule.closeGraceMillis)
    expect(CallModule.recheckAfter({ ...limits, idle: 500 }, CallModule.startActivity(0), 30_000)).toBe(500)
    expect(CallModule.recheckAfter(limits, { ...CallModule.startActivity(0), writing: true }, 400)).toBe(400)
  })
})
