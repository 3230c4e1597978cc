/**
 * Queue visibility and load shedding: a caller that waits for the local quota hears its place and the wait
 * foreseen as it moves, and a wait that cannot end in time is refused at once with a local rate-limit error that
 * says how long, never turned into a template after minutes in a queue.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type * as Domain from "../src/Domain.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import { fakeEngine } from "./utils/engine.js"
import { type Call, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { limiter } from "./utils/limiter.js"

const target = { provider: "openai", model: "gpt-4.1" } as const
const small = { inputTokens: 10, outputTokens: 10 }

/** Admits, holding the permit for `holdMillis`; what the caller was told while it waited, with when. */
const admitAndHold = (holdMillis: number, told?: Array<readonly [number, ProviderRateLimiter.Queued]>) =>
  Effect.scoped(Effect.gen(function*() {
    const rateLimiter = yield* ProviderRateLimiter.ProviderRateLimiter
    yield* rateLimiter.admit(target, small, {
      onQueued: (queued) => Effect.map(Clock.currentTimeMillis, (now) => void told?.push([now, queued]))
    })
    yield* Effect.sleep(holdMillis)
  }))

describe("ProviderRateLimiter: a waiter hears its place and its wait", () => {
  it.effect("queued for a permit: its place and the rounds of permit holders ahead, updated as the queue moves", () =>
    Effect.gen(function*() {
      // One permit. The first call holds it 10 s, so a permit is known to be held about 10 s.
      yield* Effect.fork(admitAndHold(10_000))
      yield* TestClock.adjust("10 seconds")
      yield* Effect.fork(admitAndHold(8_000)) // c holds from 10 s to 18 s
      yield* Effect.yieldNow()
      const toldD: Array<readonly [number, ProviderRateLimiter.Queued]> = []
      const toldE: Array<readonly [number, ProviderRateLimiter.Queued]> = []
      yield* Effect.fork(admitAndHold(8_000, toldD)) // d: 18 s to 26 s
      yield* Effect.yieldNow()
      const e = yield* Effect.fork(admitAndHold(0, toldE))
      yield* TestClock.adjust("20 seconds")
      yield* Fiber.join(e)
      expect(toldD).toEqual([[10_000, { place: 1, expectedWaitMs: 10_000 }]])
      // Two holders ahead, 10 s each; at 18 s d got the permit (e is next), and the mean hold is now 9.6 s.
      expect(toldE).toEqual([
        [10_000, { place: 2, expectedWaitMs: 20_000 }],
        [20_000, { place: 1, expectedWaitMs: 9_600 }]
      ])
    }).pipe(Effect.provide(limiter({ maxConcurrent: 1 }))))

  it.effect("waiting for the budget: the wait the reservation implies, told once", () =>
    Effect.gen(function*() {
      yield* admitAndHold(0)
      yield* admitAndHold(0)
      const told: Array<readonly [number, ProviderRateLimiter.Queued]> = []
      yield* Effect.fork(admitAndHold(0, told))
      yield* TestClock.adjust("1 minute")
      // Two requests a minute, both taken: the next slot is 30 s away.
      expect(told).toEqual([[0, { place: 1, expectedWaitMs: 30_000 }]])
    }).pipe(Effect.provide(limiter({ requestsPerMinute: 2 }))))

  it.effect("a caller with no wait is told nothing", () =>
    Effect.gen(function*() {
      const told: Array<readonly [number, ProviderRateLimiter.Queued]> = []
      yield* admitAndHold(0, told)
      expect(told).toEqual([])
    }).pipe(Effect.provide(limiter({}))))
})

// ---------------------------------------------------------------------------------------------------------------
// Through the engine
// ---------------------------------------------------------------------------------------------------------------

const engine = (calls: Array<Call>, quota: Partial<ProviderRateLimiter.Quota>) =>
  fakeEngine({ openai: scripted(Array(100).fill(text(sampleOutlineJson)), calls) }, {
    limiter: ProviderRateLimiter.layerMemory({
      quotas: { openai: { requestsPerMinute: 60, tokensPerMinute: 90_000, maxConcurrent: 5, ...quota } }
    })
  })

const pinned: Domain.PlotRequestInput = {
  projectId: "novel",
  userPrompt: "What happens next?",
  provider: "openai",
  model: "gpt-4.1"
}

/** One generation as a stream: its events, its end, and when it ended. */
const generation = Effect.gen(function*() {
  const events: Array<Domain.GenerationEvent> = []
  const outcome = yield* PlotGeneration.generateStream(pinned).pipe(
    Stream.runForEach((event) => Effect.sync(() => events.push(event))),
    Effect.either
  )
  const completed = events.find((e) => e._tag === "Completed")
  return {
    events,
    error: outcome._tag === "Left" ? outcome.left : undefined,
    result: completed?._tag === "Completed" ? completed.result : undefined,
    endedAt: yield* Clock.currentTimeMillis
  }
})

describe("load shedding through the engine", () => {
  it.effect("forty requests at once for two requests a minute: a few served, the rest refused at once with the wait", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const fibers = yield* Effect.forEach(Array.from({ length: 40 }), () => Effect.fork(generation))
      yield* TestClock.adjust("10 minutes")
      const ends = yield* Effect.forEach(fibers, Fiber.join)
      const served = ends.filter((end) => end.result !== undefined)
      const refused = ends.filter((end) => end.error !== undefined)
      expect(served.length + refused.length).toBe(40)
      // Two a minute: the first two at once, then one every 30 s while the call keeps its 45 s of the 180 s deadline.
      expect(served.map((end) => end.endedAt)).toEqual([0, 0, 30_000, 60_000, 90_000, 120_000])
      expect(served.every((end) => !end.result!.isTemplate)).toBe(true)
      expect(calls).toHaveLength(served.length)
      // The rest at once: no template, no provider call, the wait foreseen as the retry-after.
      for (const end of refused) {
        expect(end.endedAt).toBe(0)
        expect(end.error?._tag === "RateLimitError" && end.error.local).toBe(true)
        expect(end.error?._tag === "RateLimitError" && end.error.retryAfterMs).toBeGreaterThan(135_000)
        expect(end.error?.message).toContain("saturated")
        expect(end.events.some((e) => e._tag === "Retrying")).toBe(false)
      }
      // Those served late heard their wait first.
      const queued = served[4]!.events.find((e) => e._tag === "Queued")
      expect(queued).toMatchObject({ _tag: "Queued", provider: "openai", model: "gpt-4.1", expectedWaitMs: 90_000 })
    }).pipe(Effect.provide(engine(calls, { requestsPerMinute: 2 })), Effect.withRandom(Random.fixed([0.5])))
  })
})
