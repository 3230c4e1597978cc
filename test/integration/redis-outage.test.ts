/**
 * The limiter over Redis when Redis goes away, stays silent, or is configured from the environment: admissions
 * carry on at the local share of the quota without waiting on Redis past the store timeout, and Redis is used
 * again when it is back. A real Redis behind a TCP proxy that the test cuts and restores (`REDIS_URL`; CI starts
 * one). Bounded: a few seconds of wall time.
 */
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Net from "node:net"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as ProviderRateLimiterRedis from "../../src/ProviderRateLimiter/Redis.js"
import { testPrefix } from "../utils/redisKeys.js"
import { tcpProxy } from "../utils/tcpProxy.js"

const redisUrl = process.env.REDIS_URL
const target = { provider: "openai", model: "gpt-4.1" } as const
const one = { inputTokens: 1, outputTokens: 1 }
/** 60 requests a minute: a bucket of 60 that refills one a second. */
const quota = { requestsPerMinute: 60, tokensPerMinute: 10_000_000, maxConcurrent: 100 }

/** Warning and info lines, kept. */
const recordedLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel._tag === "Warning" || logLevel._tag === "Info") lines.push(`${logLevel.label} ${String(message)}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

const limiterOver = (port: number, options: Partial<ProviderRateLimiterRedis.Options> = {}) =>
  Effect.map(
    Layer.build(ProviderRateLimiterRedis.layer({
      quotas: { openai: quota },
      prefix: testPrefix(),
      storeTimeout: "300 millis",
      localShare: 0.5,
      ...options,
      redis: { host: "127.0.0.1", port, retryStrategy: () => 50, ...options.redis }
    })),
    (context) => Context.get(context, ProviderRateLimiter.ProviderRateLimiter)
  )

/** Admissions that do not wait: each refused at once unless the budget is there now. */
const admitNow = (limiter: ProviderRateLimiter.Service, count: number) =>
  Effect.map(
    Effect.forEach(Array.from({ length: count }), () =>
      Effect.exit(limiter.withAdmission(target, one, () => Effect.void, { until: Date.now() + 200 }))),
    (exits) =>
      exits.filter(Exit.isSuccess).length
  )

const unavailableCount = Effect.map(Metric.value(ProviderRateLimiter.storeUnavailable), (state) => state.count)

describe.skipIf(redisUrl === undefined)("ProviderRateLimiter over Redis, through an outage", () => {
  it.live("carries on at its local share while Redis is away, and goes back to Redis when it returns", () => {
    const logs = recordedLogs()
    return Effect.gen(function*() {
      const url = new URL(redisUrl!)
      const proxy = yield* tcpProxy({ host: url.hostname, port: Number(url.port || 6379) })
      const limiter = yield* limiterOver(proxy.port)
      // Redis holds the bucket: 10 of its 60 taken.
      const firstTaken = Date.now()
      expect(yield* admitNow(limiter, 10)).toBe(10)
      const unavailableBefore = yield* unavailableCount

      yield* proxy.cut
      const started = Date.now()
      // Half of what Redis held (50 of 60), locally, not a full half quota: 25 at once, the 26th would wait two
      // seconds and is refused.
      expect(yield* admitNow(limiter, 31)).toBe(25)
      // One store timeout at most, not one per admission.
      expect(Date.now() - started).toBeLessThan(1_000)
      expect((yield* unavailableCount) - unavailableBefore).toBeGreaterThanOrEqual(1)
      expect(logs.lines.filter((line) => line.includes("store unavailable"))).toHaveLength(1)

      yield* proxy.restore
      // The store is asked again after 1.5 s (five times its timeout); ioredis reconnects within 50 ms.
      yield* Effect.sleep("1600 millis")
      // The first call that finds Redis back tells it what was taken locally meanwhile (in the background).
      const firstBack = yield* admitNow(limiter, 1)
      yield* Effect.sleep("100 millis")
      // Redis's bucket again, less the 25 taken locally: the 50 it held (49 when ioredis replays the call abandoned
      // at the outage), plus one a second since, less 25.
      const refilled = Math.ceil((Date.now() - firstTaken) / 1_000)
      const afterReturn = firstBack + (yield* admitNow(limiter, 100))
      expect(afterReturn).toBeGreaterThanOrEqual(49 - 25)
      expect(afterReturn).toBeLessThanOrEqual(50 + refilled - 25)
      expect(logs.lines.some((line) => line.includes("answers again"))).toBe(true)
    }).pipe(Effect.scoped, Effect.provide(logs.layer), Logger.withMinimumLogLevel(LogLevel.Info))
  }, 15_000)

  it.live(
    "PLOT_ENGINE_REDIS_URL shares one quota between instances configured from the environment",
    () =>
      Effect.gen(function*() {
        const prefix = testPrefix()
        const environment = ConfigProvider.fromMap(
          new Map([["PLOT_ENGINE_REDIS_URL", redisUrl!], ["PLOT_ENGINE_OPENAI_RPM", "3"]])
        )
        const instance = Effect.map(
          Layer.build(
            ProviderRateLimiter.layerConfig({ prefix }).pipe(
              Layer.provide(Layer.setConfigProvider(environment))
            )
          ),
          (context) => Context.get(context, ProviderRateLimiter.ProviderRateLimiter)
        )
        const [a, b] = [yield* instance, yield* instance]
        // 3 a minute between them: what a takes, b does not get.
        expect(yield* admitNow(a, 2)).toBe(2)
        expect(yield* admitNow(b, 2)).toBe(1)
      }).pipe(Effect.scoped),
    15_000
  )
})

/** A server on loopback that accepts connections and never answers, for the scope's life. */
const silentServer = Effect.acquireRelease(
  Effect.async<Net.Server>((resume) => {
    const server = Net.createServer(() => {})
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.sync(() => server.close())
)

describe("ProviderRateLimiter over a Redis that accepts and never answers", () => {
  it.live(
    "holds its build and then admissions up one store timeout each, once, and its scope still closes (patched quit)",
    () =>
      Effect.gen(function*() {
        const silent = yield* silentServer
        const started = Date.now()
        const unavailableBefore = yield* unavailableCount
        yield* Effect.scoped(Effect.gen(function*() {
          const limiter = yield* limiterOver((silent.address() as Net.AddressInfo).port)
          // The build's first store call (the connection's, not an admission's) waits one store timeout and is
          // not an outage.
          expect(Date.now() - started).toBeGreaterThanOrEqual(250)
          expect(yield* unavailableCount).toBe(unavailableBefore)
          expect(yield* admitNow(limiter, 5)).toBe(5)
          const elapsed = Date.now() - started
          expect(elapsed).toBeGreaterThanOrEqual(550)
          expect(elapsed).toBeLessThan(1_500)
          expect((yield* unavailableCount) - unavailableBefore).toBeGreaterThanOrEqual(1)
        }))
        // ioredis's quit is never answered: the patched release disconnects after a second (it waited forever).
        expect(Date.now() - started).toBeLessThan(3_500)
      }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error)),
    15_000
  )

  it.live(
    "PLOT_ENGINE_REDIS_TIMEOUT sets how long a store call may take (the build's first call waits that)",
    () =>
      Effect.gen(function*() {
        const silent = yield* silentServer
        const port = (silent.address() as Net.AddressInfo).port
        const environment = ConfigProvider.fromMap(
          new Map([["PLOT_ENGINE_REDIS_URL", `redis://127.0.0.1:${port}`], ["PLOT_ENGINE_REDIS_TIMEOUT", "200 millis"]])
        )
        const started = Date.now()
        const built = yield* Effect.scoped(Effect.map(
          Layer.build(
            ProviderRateLimiter.layerConfig({ prefix: testPrefix() }).pipe(
              Layer.provide(Layer.setConfigProvider(environment))
            )
          ),
          () => Date.now() - started
        ))
        // 200 ms, where the default is a second.
        expect(built).toBeGreaterThanOrEqual(150)
        expect(built).toBeLessThan(800)
      }).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error)),
    15_000
  )
})

describe("ProviderRateLimiter.layerConfig with PLOT_ENGINE_REDIS_URL", () => {
  it.effect("refuses a URL that is not redis:// with an error naming the variable", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Layer.build(
        ProviderRateLimiter.layerConfig().pipe(
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(
            new Map([["PLOT_ENGINE_REDIS_URL", "http://cache.internal:6379"]])
          )))
        )
      ))
      expect(Exit.isFailure(exit) && String(exit.cause)).toContain("PLOT_ENGINE_REDIS_URL")
    }).pipe(Effect.scoped))

  it("reads user, password, database and TLS from the URL", () => {
    expect(ProviderRateLimiterRedis.redisOptionsOf("rediss://app:s%40cret@cache.internal:6380/2")).toEqual({
      host: "cache.internal",
      port: 6380,
      username: "app",
      password: "s@cret",
      db: 2,
      tls: {}
    })
    expect(ProviderRateLimiterRedis.redisOptionsOf("redis://127.0.0.1")).toEqual({ host: "127.0.0.1", port: 6379 })
  })
})
