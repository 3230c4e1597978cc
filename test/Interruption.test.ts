/**
 * Interruption: a generation interrupted mid-call gives back its permit and the output it reserved, emits no
 * `Completed`, and over real HTTP closes its request; a batch interrupted half way keeps what finished.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import { readFileSync } from "node:fs"
import * as path from "node:path"
import * as Alerts from "../src/Alerts.js"
import * as Batch from "../src/cli/Batch.js"
import type { GenerationEvent } from "../src/Domain.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as GatewaySimulator from "../src/simulator/GatewaySimulator.js"
import { type Answer, type Call, fail, httpError, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"
import { counterTotal, engineOverSimulator } from "./utils/simulated.js"
import { temporaryDirectory } from "./utils/temporaryDirectory.js"

const quota = { requestsPerMinute: 50, inputTokensPerMinute: 40_000, outputTokensPerMinute: 8_000, maxConcurrent: 2 }
const request = { projectId: "novel", userPrompt: "What happens at the Drowned Bell?", provider: "anthropic" as const }
const hang: Answer = { _tag: "Hang" }

/** The engine over a scripted Claude, behind a limiter with an Anthropic-style quota. */
const engine = (answers: ReadonlyArray<Answer>, calls: Array<Call> = []) =>
  PlotGeneration.layer().pipe(
    Layer.provide(Providers.layerModels({ anthropic: scripted(answers, calls) })),
    Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
    Layer.provideMerge(ProviderRateLimiter.layerMemory({ quotas: { anthropic: quota } })),
    Layer.provide(Alerts.layerDisabled)
  )

const limiterState = Effect.flatMap(ProviderRateLimiter.ProviderRateLimiter, (limiter) => limiter.snapshot).pipe(
  Effect.map((keys) => keys.find((key) => key.key.startsWith("anthropic/"))!)
)

/** Calls to any model that ended interrupted. */
const interruptedCalls = counterTotal("plot_engine_provider_calls_total", { outcome: "interrupted" })

describe("interrupting a generation", () => {
  it.effect("mid-call gives back the permit and the output it reserved; the prompt stays counted", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const interruptedBefore = yield* interruptedCalls
      const fiber = yield* Effect.fork(engineService.generate(request))
      yield* TestClock.adjust("1 second")
      const during = yield* limiterState
      expect(during.inFlight).toBe(1)
      expect(during.permitsFree).toBe(1)
      expect(during.available.otpm).toBeLessThan(quota.outputTokensPerMinute)

      yield* Fiber.interrupt(fiber)
      const after = yield* limiterState
      expect(after).toMatchObject({ inFlight: 0, queued: 0, permitsFree: 2 })
      // No output was written: all of the output budget is back at once.
      expect(after.available.otpm).toBe(quota.outputTokensPerMinute)
      // The provider received the prompt, so its input tokens stay counted.
      expect(after.available.itpm).toBeLessThan(during.available.itpm + 1_000)
      expect(after.available.itpm).toBeLessThan(quota.inputTokensPerMinute)
      expect((yield* interruptedCalls) - interruptedBefore).toBe(1)
    }).pipe(Effect.provide(engine([hang]))))

  it.effect("a stream failing midway keeps what it wrote counted in the output budget", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const error = yield* Effect.flip(Stream.runDrain(engineService.generateStream(request, { useFallback: false })))
      expect(error._tag).toBe("InvalidRequestError")
      // 400 characters written before the error event: about 100 tokens stay counted; the rest comes back.
      expect((yield* limiterState).available.otpm).toBe(quota.outputTokensPerMinute - 100)
    }).pipe(Effect.provide(engine([{
      _tag: "StreamError",
      partial: "x".repeat(400),
      event: {
        type: "error",
        error: { type: "invalid_request_error", message: "Output blocked by content filtering policy" }
      }
    }]))))

  it.effect("while it waits for admission gives back everything it reserved", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      // Two calls hang and hold both permits; the third waits for one.
      const holders = yield* Effect.forkAll([engineService.generate(request), engineService.generate(request)])
      yield* TestClock.adjust("1 second")
      const waiter = yield* Effect.fork(engineService.generate(request))
      yield* TestClock.adjust("1 second")
      expect(yield* limiterState).toMatchObject({ queued: 1, inFlight: 2, permitsFree: 0 })

      yield* Fiber.interrupt(waiter)
      expect(yield* limiterState).toMatchObject({ queued: 0, inFlight: 2, permitsFree: 0 })
      yield* Fiber.interrupt(holders)
      const after = yield* limiterState
      expect(after).toMatchObject({ queued: 0, inFlight: 0, permitsFree: 2 })
      expect(after.available.otpm).toBe(quota.outputTokensPerMinute)
    }).pipe(Effect.provide(engine([hang]))))

  it.effect("as a stream emits the stages so far and never `Completed`", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const events: Array<GenerationEvent> = []
      const fiber = yield* engineService.generateStream(request).pipe(
        Stream.runForEach((event) => Effect.sync(() => events.push(event))),
        Effect.fork
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      yield* TestClock.adjust("10 minutes")
      expect(events.map((event) => event._tag)).toContain("ModelSelected")
      expect(events.some((event) => event._tag === "Progress" && event.stage === "generating")).toBe(true)
      expect(events.some((event) => event._tag === "Completed")).toBe(false)
      expect(yield* limiterState).toMatchObject({ queued: 0, inFlight: 0, permitsFree: 2 })
    }).pipe(Effect.provide(engine([hang]))))
})

describe("interrupting a batch half way", () => {
  it.effect("keeps every outcome that finished in the output file, each a whole line", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const out = path.join(temporaryDirectory("plot-engine-batch-"), "out.jsonl")
      const requests = Array.from({ length: 6 }, (_, i) => ({ ...request, userPrompt: `Request ${i}` }))
      const finished: Array<number> = []
      const fiber = yield* Effect.fork(Batch.run(engineService, requests, {
        concurrency: 1,
        out,
        onProgress: (done) => Effect.sync(() => finished.push(done.length))
      }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)

      // The first three calls answer, the fourth hangs until the interruption.
      expect(finished).toEqual([1, 2, 3])
      const lines = readFileSync(out, "utf8").split("\n")
      expect(lines.at(-1)).toBe("")
      const written = lines.slice(0, -1).map((line) => JSON.parse(line) as { index: number; result?: unknown })
      expect(written.map((line) => line.index)).toEqual([0, 1, 2])
      expect(written.every((line) => line.result !== undefined)).toBe(true)
    }).pipe(Effect.provide(engine([text(sampleOutlineJson), text(sampleOutlineJson), text(sampleOutlineJson), hang]))))
})

describe("interrupting a generation over HTTP", () => {
  /** Polls (on the wall clock: a real server) until a condition on the simulator's stats holds. */
  const until = (simulator: GatewaySimulator.Service, holds: (stats: GatewaySimulator.Stats) => boolean) =>
    simulator.stats.pipe(
      Effect.filterOrFail(holds),
      Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 300 }),
      Effect.orDie
    )

  for (const provider of ["openai", "anthropic"] as const) {
    for (const streamed of [false, true]) {
      it.scopedLive(
        `closes the ${provider} request ${streamed ? "(streamed)" : ""} and the simulator sees it`,
        () =>
          Effect.gen(function*() {
            const simulator = yield* GatewaySimulator.GatewaySimulator
            const key = `sk-interrupt-${provider}-${streamed}-0123456789`
            yield* simulator.script(key, ["hang"])
            const engineService = yield* engineOverSimulator({ [provider]: key })
            const events: Array<GenerationEvent> = []
            const fiber = yield* Effect.fork(
              streamed
                ? Stream.runForEach(
                  engineService.generateStream({ ...request, provider }),
                  (event) => Effect.sync(() => events.push(event))
                )
                : Effect.asVoid(engineService.generate({ ...request, provider }))
            )
            yield* until(simulator, (stats) => stats.requests === 1)
            yield* Fiber.interrupt(fiber)
            const stats = yield* until(simulator, (stats) => stats.closedByClient === 1)
            expect(stats).toMatchObject({ requests: 1, closedByClient: 1, faults: { hang: 1 } })
            expect(events.some((event) => event._tag === "Completed")).toBe(false)
          }).pipe(Effect.provide(Layer.merge(GatewaySimulator.layer(), NodeHttpClient.layerUndici))),
        15_000
      )
    }
  }
})

describe("interrupting the probe of a half-open circuit", () => {
  it.effect("while it waits for admission hands the probe back: the next generation probes the model", () => {
    const notFound = fail(httpError(404, { type: "error", error: { type: "not_found_error", message: "model: x" } }))
    const pinned = { ...request, model: "claude-haiku-4-5" }
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const limiter = yield* ProviderRateLimiter.ProviderRateLimiter
      // The provider says it does not serve the model: its circuit opens for 10 minutes.
      yield* Effect.either(engineService.generate(pinned, { useFallback: false }))
      yield* TestClock.adjust("10 minutes")
      // Half-open. Both permits held: the probe waits for admission, and is interrupted there.
      const holders = yield* Effect.forkAll(
        Array.from({ length: 2 }, () =>
          Effect.scoped(Effect.zipRight(
            limiter.admit({ provider: "anthropic", model: "claude-haiku-4-5" }, { inputTokens: 1, outputTokens: 1 }),
            Effect.never
          )))
      )
      yield* TestClock.adjust("1 millis")
      const probe = yield* Effect.fork(engineService.generate(pinned, { useFallback: false }))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(probe)
      yield* Fiber.interrupt(holders)
      // Handed back: a probe left out would have the circuit skip the model until the process restarted.
      const next = yield* Effect.either(engineService.generate(pinned, { useFallback: false }))
      expect(calls.map((call) => call.at)).toEqual([0, 601_001])
      expect(next._tag).toBe("Right")
    }).pipe(Effect.provide(engine([notFound, text(sampleOutlineJson)], calls)))
  })
})
