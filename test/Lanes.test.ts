/**
 * Priority lanes in the rate limiter, in virtual time: an interactive request (a writer at the screen) goes ahead of
 * queued batch requests, has permits kept for it, is not refused behind a batch's queue, and never waits behind a
 * batch's reservation ahead of the buckets; batch requests use what is idle.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../src/Alerts.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import { sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"
import { limiter } from "./utils/limiter.js"

const target = { provider: "openai", model: "gpt-4.1" } as const

/** A request of a lane, admitted through `withAdmission`: when it was admitted is logged; it holds its permit. */
const request = (
  log: Array<readonly [string, number]>,
  name: string,
  lane: ProviderRateLimiter.Lane,
  options: { readonly tokens?: number; readonly holdMillis?: number; readonly until?: number } = {}
) =>
  Effect.flatMap(ProviderRateLimiter.ProviderRateLimiter, (rateLimiter) =>
    rateLimiter.withAdmission(
      target,
      { inputTokens: options.tokens ?? 10, outputTokens: 0 },
      () =>
        Effect.zipRight(
          Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => log.push([name, now]))),
          Effect.sleep(options.holdMillis ?? 0)
        ),
      { lane, until: options.until }
    ))

/** Starts the requests in order, each after the one before has its place. */
const startAll = (requests: ReadonlyArray<Effect.Effect<unknown, unknown, ProviderRateLimiter.ProviderRateLimiter>>) =>
  Effect.forEach(requests, (effect) => Effect.zipLeft(Effect.fork(effect), Effect.yieldNow()))

describe("ProviderRateLimiter lanes", () => {
  it.effect("an interactive request goes ahead of the batch requests queued before it", () =>
    Effect.gen(function*() {
      const log: Array<readonly [string, number]> = []
      // Two requests a minute: the first two go at once, then one every 30 s.
      const batch = yield* startAll(["b1", "b2", "b3", "b4"].map((name) => request(log, name, "batch")))
      yield* TestClock.adjust("1 second")
      const interactive = yield* startAll([request(log, "writer", "interactive")])
      yield* TestClock.adjust("5 minutes")
      yield* Fiber.joinAll([...batch, ...interactive])
      expect(log.map(([name]) => name)).toEqual(["b1", "b2", "writer", "b3", "b4"])
      // The writer has the next request the budget allows (a request every 30 s, counted from its arrival).
      expect(log[2]![1]).toBe(31_000)
    }).pipe(Effect.provide(limiter({ requestsPerMinute: 2 }))))

  it.effect("batch requests leave the permits kept for interactive ones (one of five by default), and use the rest", () =>
    Effect.gen(function*() {
      const log: Array<readonly [string, number]> = []
      const batch = yield* startAll(
        ["b1", "b2", "b3", "b4", "b5", "b6"].map((name) => request(log, name, "batch", { holdMillis: 10_000 }))
      )
      yield* TestClock.adjust("1 second")
      const interactive = yield* startAll([request(log, "writer", "interactive", { holdMillis: 10_000 })])
      yield* TestClock.adjust("1 minute")
      yield* Fiber.joinAll([...batch, ...interactive])
      expect(log).toEqual([
        ["b1", 0],
        ["b2", 0],
        ["b3", 0],
        ["b4", 0],
        ["writer", 1_000],
        ["b5", 10_000],
        ["b6", 10_000]
      ])
    }).pipe(Effect.provide(limiter({ maxConcurrent: 5 }))))

  it.effect("with no share kept, batch requests may take every permit", () =>
    Effect.gen(function*() {
      const log: Array<readonly [string, number]> = []
      const batch = yield* startAll(
        ["b1", "b2", "b3", "b4", "b5"].map((name) => request(log, name, "batch", { holdMillis: 10_000 }))
      )
      yield* TestClock.adjust("1 minute")
      yield* Fiber.joinAll(batch)
      expect(log.map(([, at]) => at)).toEqual([0, 0, 0, 0, 0])
    }).pipe(Effect.provide(limiter({ maxConcurrent: 5 }, { interactiveShare: 0 }))))

  it.effect("an interactive request is not refused as saturated behind a long batch queue", () =>
    Effect.gen(function*() {
      const log: Array<readonly [string, number]> = []
      // 100 batch requests at 2 a minute: the last waits some 50 minutes; the writer may wait 1 minute.
      const batch = yield* startAll(
        Array.from({ length: 100 }, (_, i) => request(log, `b${i}`, "batch", { until: 24 * 3_600_000 }))
      )
      const interactive = yield* Effect.fork(Effect.either(request(log, "writer", "interactive", { until: 60_000 })))
      yield* TestClock.adjust("1 minute")
      const outcome = yield* Fiber.join(interactive)
      expect(outcome._tag).toBe("Right")
      expect(log.find(([name]) => name === "writer")).toEqual(["writer", 30_000])
      yield* Effect.forEach(batch, Fiber.interrupt)
    }).pipe(Effect.provide(limiter({ requestsPerMinute: 2 }, { queueTimeout: "1 day" }))))

  it.effect("a batch request waits for the buckets rather than reserving ahead: the writer waits only for its own tokens", () =>
    Effect.gen(function*() {
      const log: Array<readonly [string, number]> = []
      // 6,000 tokens a minute (100 a second), requests of 5,000: the first at once, the next when 5,000 are back.
      const batch = yield* startAll(["b1", "b2"].map((name) => request(log, name, "batch", { tokens: 5_000 })))
      yield* TestClock.adjust("1 second")
      const interactive = yield* startAll([request(log, "writer", "interactive", { tokens: 5_000 })])
      yield* TestClock.adjust("5 minutes")
      yield* Fiber.joinAll([...batch, ...interactive])
      // At 1 s the buckets hold 1,100: the writer's 5,000 are there at 40 s (b2 had reserved nothing ahead of it);
      // b2 then waits for its own 5,000, at 90 s.
      expect(log).toEqual([["b1", 0], ["writer", 40_000], ["b2", 90_000]])
    }).pipe(Effect.provide(limiter({ tokensPerMinute: 6_000 }))))
})

describe("a generation's lane", () => {
  it.effect("is the limiter's lane for its calls: interactive by default, batch when asked", () =>
    Effect.gen(function*() {
      const lanes: Array<ProviderRateLimiter.Lane | undefined> = []
      const unlimited = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(
        Effect.provide(ProviderRateLimiter.layerUnlimited)
      )
      const recording = Layer.succeed(ProviderRateLimiter.ProviderRateLimiter, {
        ...unlimited,
        withAdmission: (target, estimate, use, options) => {
          lanes.push(options?.lane)
          return unlimited.withAdmission(target, estimate, use, options)
        }
      })
      const engine = yield* PlotGeneration.make().pipe(
        Effect.provide(Providers.layerModels({ openai: scripted([text(sampleOutlineJson)]) })),
        Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
        Effect.provide(recording),
        Effect.provide(Alerts.layerDisabled)
      )
      const request = { projectId: "novel", userPrompt: "What happens next?", provider: "openai" as const }
      yield* engine.generate(request)
      yield* engine.generate(request, { lane: "batch" })
      expect(lanes).toEqual(["interactive", "batch"])
    }))
})
