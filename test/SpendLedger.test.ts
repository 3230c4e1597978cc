/**
 * Spend budgets in virtual time: a generation that would pass its project's budget fails with a typed
 * `BudgetExceededError` before any call; what a generation really cost is what the budget pays; budgets are whole
 * again when their period ends.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import * as Errors from "../src/Errors.js"
import * as ModelCatalog from "../src/ModelCatalog.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as SpendLedger from "../src/SpendLedger.js"
import { fakeEngine } from "./utils/engine.js"
import { type Call, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"

const mini = Option.getOrThrow(ModelCatalog.find(ModelCatalog.defaultCatalog, "openai", "gpt-4.1-mini"))
/** Each call reports 10,000 tokens in and 2,000 out: $0.0072 on gpt-4.1-mini. */
const expensive = text(sampleOutlineJson, { inputTokens: 10_000, outputTokens: 2_000 })
const callCost = ModelCatalog.cost(mini, { inputTokens: 10_000, outputTokens: 2_000 })!

const engine = (calls: Array<Call>, limits: SpendLedger.Limits) =>
  fakeEngine({ openai: scripted([expensive], calls) }, { projects: { novel: sampleProject, other: sampleProject } })
    .pipe(Layer.provideMerge(SpendLedger.layerMemory(limits)))

const request = (projectId = "novel") => ({
  projectId,
  userPrompt: "What happens next?",
  provider: "openai" as const,
  model: "gpt-4.1-mini"
})

const generate = (projectId?: string) =>
  Effect.either(PlotGeneration.generate(request(projectId))).pipe(Effect.withRandom(Random.fixed([0.5])))

describe("SpendLedger", () => {
  it.effect("a project over its daily budget fails before any call, and may spend again the next day", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      // The first generation is expected to cost about $0.004 and really costs $0.0072: the budget pays the latter.
      const first = yield* generate()
      expect(first._tag === "Right" && first.right.estimatedCostUsd).toBeCloseTo(callCost, 12)
      const refused = yield* generate()
      expect(calls).toHaveLength(1)
      const error = refused._tag === "Left" ? refused.left : undefined
      expect(error?._tag).toBe("BudgetExceededError")
      if (error?._tag !== "BudgetExceededError") return
      expect([error.projectId, error.period, error.limitUsd, error.resetsAt]).toEqual([
        "novel",
        "day",
        0.01,
        86_400_000
      ])
      expect(error.spentUsd).toBeCloseTo(callCost, 12)
      expect(Errors.userMessage(error)).toBe(
        "This project has reached its spending limit for today. Please try again when it resets, or raise the limit."
      )
      // Another project has its own budget.
      expect((yield* generate("other"))._tag).toBe("Right")
      // The next day (UTC), the budget is whole again.
      yield* TestClock.adjust("1 day")
      expect((yield* generate())._tag).toBe("Right")
      expect(calls).toHaveLength(3)
    }).pipe(Effect.provide(engine(calls, { default: { dailyUsd: 0.01 } })))
  })

  it.effect("generations under way hold their estimates: two at once cannot pass the budget together", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const [snapshotBefore] = yield* Effect.flatMap(SpendLedger.SpendLedger, (ledger) => ledger.snapshot)
      expect(snapshotBefore).toMatchObject({ projectId: "novel", period: "day", limitUsd: 0.006, spentUsd: 0 })
      // Each is expected to cost about $0.004: the second would pass $0.006 with the first's estimate held.
      const both = yield* Effect.all([generate(), generate()], { concurrency: 2 })
      expect(both.map((outcome) => outcome._tag === "Left" ? outcome.left._tag : "plot").sort()).toEqual([
        "BudgetExceededError",
        "plot"
      ])
      const snapshot = yield* Effect.flatMap(SpendLedger.SpendLedger, (ledger) => ledger.snapshot)
      const day = snapshot.find((s) => s.projectId === "novel" && s.period === "day")
      expect(day?.reservedUsd).toBeCloseTo(0, 12)
      expect(day?.spentUsd).toBeCloseTo(callCost, 12)
    }).pipe(Effect.provide(engine(calls, { projects: { novel: { dailyUsd: 0.006, monthlyUsd: 1 } } })))
  })

  it.effect("a monthly budget, and a project's own limit over the default", () =>
    Effect.gen(function*() {
      const ledger = SpendLedger.makeMemory({ default: { monthlyUsd: 1 }, projects: { big: { monthlyUsd: 100 } } })
      yield* TestClock.setTime(Date.UTC(2026, 11, 31, 23, 0))
      const held = yield* ledger.reserve("novel", 0.8)
      yield* held.settle(0.9)
      const refused = yield* Effect.flip(ledger.reserve("novel", 0.2))
      expect([refused.period, refused.resetsAt]).toEqual(["month", Date.UTC(2027, 0, 1)])
      yield* ledger.reserve("big", 50)
      // A new month.
      yield* TestClock.adjust("1 hour")
      yield* ledger.reserve("novel", 0.2)
    }))

  it.effect("pays what the priced attempts cost when another's price is unknown", () => {
    const calls: Array<Call> = []
    // Claude's prices unknown: the generation's cost is unknown, but what it spent on gpt-4.1-mini is not.
    const catalog = ModelCatalog.defaultCatalog.map((model) =>
      model.provider === "anthropic"
        ? new ModelCatalog.ModelInfo({ ...model, inputPricePerMillion: null, outputPricePerMillion: null })
        : model
    )
    const prose = text("No outline today.", { inputTokens: 10_000, outputTokens: 2_000 })
    return Effect.gen(function*() {
      // Two answers that are not outlines on gpt-4.1-mini, then Claude's outline.
      const outcome = yield* Effect.either(
        PlotGeneration.generate({ projectId: "novel", userPrompt: "What happens next?", provider: "openai" })
      ).pipe(Effect.withRandom(Random.fixed([0.5])))
      expect(calls.map((call) => call.model)).toEqual(["gpt-4.1-mini", "gpt-4.1-mini", "claude-haiku-4-5"])
      expect(outcome._tag === "Right" && outcome.right.estimatedCostUsd).toBeNull()
      // Before, the unknown total was paid as 0.
      const snapshot = yield* Effect.flatMap(SpendLedger.SpendLedger, (ledger) => ledger.snapshot)
      expect(snapshot.find((s) => s.period === "day")?.spentUsd).toBeCloseTo(2 * callCost, 12)
    }).pipe(Effect.provide(
      fakeEngine({ openai: scripted([prose], calls), anthropic: scripted([text(sampleOutlineJson)], calls) }, {
        options: { catalog }
      }).pipe(Layer.provideMerge(SpendLedger.layerMemory({ default: { dailyUsd: 1 } })))
    ))
  })

  it.effect("a generation interrupted while its reservation is made settles it once made", () => {
    const settled: Array<number> = []
    // A ledger whose store takes a second to answer (a Redis round trip under load).
    const slowLedger = Layer.succeed(SpendLedger.SpendLedger, {
      reserve: () =>
        Effect.as(Effect.sleep("1 second"), { settle: (costUsd) => Effect.sync(() => settled.push(costUsd)) }),
      snapshot: Effect.succeed([])
    })
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(generate())
      yield* TestClock.adjust("500 millis")
      const interrupted = yield* Effect.fork(Fiber.interrupt(fiber))
      yield* TestClock.adjust("500 millis")
      yield* Fiber.join(interrupted)
      // Before, the reservation was made after the interruption and held until the ledger's hold expired.
      expect(settled).toEqual([0])
    }).pipe(Effect.provide(fakeEngine({ openai: scripted([expensive]) }).pipe(Layer.provideMerge(slowLedger))))
  })

  it.effect("forgets the periods that ended: a long-running ledger keeps the current day and month only", () =>
    Effect.gen(function*() {
      const ledger = SpendLedger.makeMemory({ default: { dailyUsd: 5 } })
      for (const projectId of ["a", "b", "c"]) yield* Effect.flatMap(ledger.reserve(projectId, 1), (r) => r.settle(1))
      yield* TestClock.adjust("40 days")
      yield* Effect.flatMap(ledger.reserve("d", 1), (r) => r.settle(1))
      // Before, every project of every past day and month was kept (and listed, at 0).
      expect([...new Set((yield* ledger.snapshot).map((s) => s.projectId))]).toEqual(["d"])
    }))

  it.effect("without a ledger, nothing is limited", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(PlotGeneration.generate(request()))
      expect((yield* Fiber.join(fiber)).isTemplate).toBe(false)
    }).pipe(Effect.provide(fakeEngine({ openai: scripted([expensive]) }))))
})
