/**
 * The spend ledger over a real Redis: instances share one budget per project, a generation over it fails before
 * any call, a hold whose process died lapses, and a Redis that is gone does not stop generation. Needs a Redis
 * server: `REDIS_URL` (CI starts one). The budgets run on the `TestClock`; Redis is real.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import { randomUUID } from "node:crypto"
import * as Net from "node:net"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as SpendLedger from "../../src/SpendLedger.js"
import * as SpendLedgerRedis from "../../src/SpendLedger/Redis.js"
import { fakeEngine } from "../utils/engine.js"
import { type Call, sampleOutlineJson, scripted, text } from "../utils/FakeModel.js"
import { sampleProject } from "../utils/fixtures.js"
import { tcpProxy } from "../utils/tcpProxy.js"

const redisUrl = process.env.REDIS_URL
if (redisUrl === undefined) {
  if (process.env.CI === "true") {
    throw new Error("REDIS_URL is not set: CI must start a Redis server for the Redis suite")
  }
  console.warn("REDIS_URL is not set: the Redis spend ledger suite is skipped (CI runs it)")
}

/** Ledger calls that went ahead without Redis, so far. */
const unavailableCount = Effect.map(Metric.value(SpendLedger.storeUnavailable), (state) => state.count)

/** Two instances' ledgers over one Redis, under a prefix of this test's own. */
const twoInstances = (limits: SpendLedger.Limits, holdTimeout?: Duration.DurationInput) =>
  Effect.gen(function*() {
    const url = new URL(redisUrl!)
    const options = {
      limits,
      holdTimeout,
      prefix: `plot-engine-test-${randomUUID()}:`,
      redis: { host: url.hostname, port: Number(url.port || 6379) }
    }
    const a = yield* Layer.build(SpendLedgerRedis.layer(options))
    const b = yield* Layer.build(SpendLedgerRedis.layer(options))
    return [Context.get(a, SpendLedger.SpendLedger), Context.get(b, SpendLedger.SpendLedger)] as const
  })

describe.skipIf(redisUrl === undefined)("SpendLedger over Redis", () => {
  it.scoped("two instances draw on one budget: a hold on one refuses the other, a settlement counts on both", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(Date.UTC(2026, 11, 2, 12))
      const [a, b] = yield* twoInstances({ default: { dailyUsd: 1 }, projects: { big: { dailyUsd: 10 } } })
      const held = yield* a!.reserve("novel", 0.6)
      const refused = yield* Effect.flip(b!.reserve("novel", 0.5))
      expect(refused).toMatchObject({
        _tag: "BudgetExceededError",
        projectId: "novel",
        period: "day",
        limitUsd: 1,
        spentUsd: 0.6,
        estimateUsd: 0.5,
        resetsAt: Date.UTC(2026, 11, 3)
      })
      // Another project, with a limit of its own.
      yield* b!.reserve("big", 5)
      // The generation cost less than its estimate: the rest of the budget is free again, on every instance.
      yield* held.settle(0.3)
      yield* held.settle(0.3) // settling twice counts once
      const second = yield* b!.reserve("novel", 0.5)
      const snapshot = yield* a!.snapshot
      expect(snapshot.filter((period) => period.projectId === "novel")).toEqual([
        {
          projectId: "novel",
          period: "day",
          limitUsd: 1,
          spentUsd: 0.3,
          reservedUsd: 0.5,
          resetsAt: Date.UTC(2026, 11, 3)
        },
        {
          projectId: "novel",
          period: "month",
          limitUsd: undefined,
          spentUsd: 0.3,
          reservedUsd: 0.5,
          resetsAt: Date.UTC(2027, 0, 1)
        }
      ])
      yield* second.settle(0.5)
      expect(yield* Effect.flip(a!.reserve("novel", 0.3))).toMatchObject({ period: "day", spentUsd: 0.8 })
      // The next day (UTC) the daily budget is whole again.
      yield* TestClock.adjust("12 hours")
      yield* a!.reserve("novel", 0.9)
    }))

  it.scoped("a hold whose generation never settled (its process died) lapses after holdTimeout", () =>
    Effect.gen(function*() {
      const [a, b] = yield* twoInstances({ default: { monthlyUsd: 1 } }, "10 minutes")
      yield* a!.reserve("novel", 0.9) // never settled
      expect(yield* Effect.flip(b!.reserve("novel", 0.2))).toMatchObject({ period: "month", spentUsd: 0.9 })
      yield* TestClock.adjust("9 minutes")
      expect((yield* Effect.either(b!.reserve("novel", 0.2)))._tag).toBe("Left")
      yield* TestClock.adjust("1 minute")
      yield* b!.reserve("novel", 0.2)
    }))

  it.scoped("a generation over its project's budget fails with BudgetExceededError before any call", () => {
    const calls: Array<Call> = []
    const mini = ModelCatalog.find(ModelCatalog.defaultCatalog, "openai", "gpt-4.1-mini")
    expect(mini._tag).toBe("Some")
    return Effect.gen(function*() {
      const [ledger] = yield* twoInstances({ default: { dailyUsd: 0.01 } })
      const engine = fakeEngine(
        { openai: scripted([text(sampleOutlineJson, { inputTokens: 10_000, outputTokens: 2_000 })], calls) },
        { projects: { novel: sampleProject } }
      ).pipe(Layer.provideMerge(Layer.succeed(SpendLedger.SpendLedger, ledger!)))
      const generate = PlotGeneration.generate({
        projectId: "novel",
        userPrompt: "What happens next?",
        provider: "openai",
        model: "gpt-4.1-mini"
      }).pipe(Effect.withRandom(Random.fixed([0.5])), Effect.either, Effect.provide(engine))
      expect((yield* generate)._tag).toBe("Right")
      const refused = yield* generate
      expect(refused._tag === "Left" && refused.left._tag).toBe("BudgetExceededError")
      expect(calls).toHaveLength(1)
    })
  })
})

/** A server that accepts connections and never answers: a Redis that hangs. */
const silentServer = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const server = Net.createServer(() => {})
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => server.close())
)

describe.skipIf(redisUrl === undefined)("SpendLedger over Redis, through an outage", () => {
  it.live("what generations cost while Redis was away is recorded when it is back", () => {
    const logs: Array<string> = []
    const recordLogs = Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning" || logLevel._tag === "Info") logs.push(`${logLevel.label} ${String(message)}`)
    })
    return Effect.gen(function*() {
      const url = new URL(redisUrl!)
      const proxy = yield* tcpProxy({ host: url.hostname, port: Number(url.port || 6379) })
      const ledger = yield* Effect.map(
        Layer.build(SpendLedgerRedis.layer({
          limits: { default: { dailyUsd: 1 } },
          prefix: `plot-engine-test-${randomUUID()}:`,
          commandTimeout: "300 millis",
          redis: { host: "127.0.0.1", port: proxy.port, retryStrategy: () => 50 }
        })),
        (context) => Context.get(context, SpendLedger.SpendLedger)
      )
      const before = yield* ledger.reserve("novel", 0.5)
      yield* proxy.cut
      // Held in Redis before the outage, settled during it.
      yield* before.settle(0.7)
      // Started during the outage: unchecked, and its cost still counts.
      const during = yield* ledger.reserve("novel", 0.5)
      yield* during.settle(0.2)
      yield* proxy.restore
      // Redis is back (ioredis reconnects within 50 ms): both settlements are recorded before this reservation.
      const refused = yield* ledger.reserve("novel", 0.2).pipe(
        Effect.zipRight(Effect.fail("admitted: Redis is not back yet" as const)),
        Effect.retry({
          while: (error) => typeof error === "string",
          schedule: Schedule.spaced("100 millis"),
          times: 30
        }),
        Effect.flip
      )
      expect(refused).toMatchObject({ _tag: "BudgetExceededError", spentUsd: 0.9, estimateUsd: 0.2 })
      // One warning for the outage, one line when it ends.
      expect(logs).toEqual([
        expect.stringContaining("WARN Spend ledger unavailable (settle)"),
        "INFO Spend ledger answers again; generations are checked against it"
      ])
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, recordLogs)), Effect.scoped)
  }, 15_000)
})

describe("SpendLedger over Redis, when Redis is gone or silent", () => {
  const unreachable = [
    ["gone (nothing listens)", Effect.succeed(1)],
    [
      "silent (it accepts and never answers)",
      Effect.map(silentServer, (server) => (server.address() as Net.AddressInfo).port)
    ]
  ] as const
  it.live.each(unreachable)(
    "%s: a generation is neither refused nor held up, one warning says so, and Redis is left alone for retryAfter",
    ([, port]) => {
      const logs: Array<string> = []
      const recordLogs = Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning" || logLevel._tag === "Info") logs.push(`${logLevel.label} ${String(message)}`)
      })
      return Effect.gen(function*() {
        const ledger = yield* Effect.map(
          Layer.build(SpendLedgerRedis.layer({
            limits: { default: { dailyUsd: 0.000_001 } },
            commandTimeout: "1 second",
            retryAfter: "1 minute",
            redis: { host: "127.0.0.1", port: yield* port, retryStrategy: () => null }
          })),
          (context) => Context.get(context, SpendLedger.SpendLedger)
        )
        const unavailableBefore = yield* unavailableCount
        const started = Date.now()
        const first = yield* ledger.reserve("novel", 5)
        // One command given up within its timeout, or at once when nothing listens.
        expect(Date.now() - started).toBeLessThan(2_000)
        const afterFirst = Date.now()
        // Everything after it, within retryAfter, goes on without asking Redis: not a timeout more.
        yield* first.settle(5)
        const second = yield* ledger.reserve("novel", 5)
        yield* second.settle(5)
        expect(yield* ledger.snapshot).toEqual([])
        expect(Date.now() - afterFirst).toBeLessThan(500)
        expect((yield* unavailableCount) - unavailableBefore).toBe(5)
        expect(logs).toEqual([
          expect.stringMatching(
            /^WARN Spend ledger unavailable \(reserve\); generations go ahead unchecked until it answers, asked again every 1m/
          )
        ])
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, recordLogs)), Effect.scoped)
    },
    10_000
  )
})
