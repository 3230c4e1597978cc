/**
 * The chaos soak: generations over real HTTP (the real `@effect/ai` clients, loopback only) against the
 * simulator's chaos mix of faults, with short configured delays. Every generation must resolve with content,
 * a template or a typed error, within its deadline; no defect; every limiter permit back; no fiber left; and
 * the counts reconcile with what the simulator saw.
 *
 * CI-sized by default (`SOAK_GENERATIONS`, 2,000, 16 at a time: about 30 s here); set it higher for a longer
 * run, e.g. `SOAK_GENERATIONS=20000 npx vitest run test/integration/soak.test.ts`.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as Supervisor from "effect/Supervisor"
import type { PlotResult, ProviderName } from "../../src/Domain.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as RetryPolicy from "../../src/RetryPolicy.js"
import * as Faults from "../../src/simulator/Faults.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { counterTotal, engineOverSimulator } from "../utils/simulated.js"

const generations = Number(process.env.SOAK_GENERATIONS ?? 2_000)
const concurrency = Number(process.env.SOAK_CONCURRENCY ?? 16)
const deadlineMillis = 10_000

/**
 * The default retry table with 20 ms delays (jitter kept), short timeouts, a deadline per generation, and 3 attempts,
 * so that some generations run out of attempts and end as templates or typed failures too.
 */
const policy: RetryPolicy.Policy = {
  ...RetryPolicy.mapRules(RetryPolicy.defaults, (rule) => ({ ...rule, delay: "20 millis" })),
  maxAttempts: 3,
  attemptTimeout: "2 seconds",
  deadline: `${deadlineMillis} millis`
}

/** Quotas far above what the soak uses: the limiter admits everything, so its accounting is what is tested. */
const quota = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, maxConcurrent: 24 }
const anthropicQuota = {
  requestsPerMinute: 1_000_000,
  inputTokensPerMinute: 1_000_000_000,
  outputTokensPerMinute: 1_000_000_000,
  maxConcurrent: 24
}

type Outcome =
  | {
    readonly _tag: "Content" | "Template"
    readonly result: PlotResult
    readonly millis: number
    readonly fallback: boolean
  }
  | { readonly _tag: "TypedFailure"; readonly error: string; readonly millis: number; readonly fallback: boolean }
  | { readonly _tag: "Defect"; readonly cause: string; readonly millis: number; readonly fallback: boolean }

it.scopedLive(
  `chaos soak: ${generations} generations over HTTP with the chaos fault mix`,
  () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const limiter = yield* ProviderRateLimiter.ProviderRateLimiter
      const engine = yield* engineOverSimulator(
        { openai: "sk-soak-openai-0123456789", anthropic: "sk-ant-soak-0123456789" },
        { retryPolicy: policy, circuitBreaker: { cooldown: "200 millis" } },
        Layer.succeed(ProviderRateLimiter.ProviderRateLimiter, limiter)
      )
      const callsBefore = yield* counterTotal("plot_engine_provider_calls_total")

      const one = (i: number) => {
        const provider: ProviderName = i % 2 === 0 ? "openai" : "anthropic"
        // Short replies: the soak is about failures, and the simulator shares this process's CPU.
        const request = {
          projectId: "novel",
          userPrompt: `Soak request ${i}: what happens at the Drowned Bell?`,
          provider,
          targetWordCount: 200
        }
        // Half plain, half streamed; every fourth without the template fallback, so typed failures happen too.
        const options = { useFallback: i % 4 !== 3 }
        const generation = i % 3 === 0
          ? engine.generateStream(request, options).pipe(
            Stream.runLast,
            Effect.flatMap((last) =>
              last._tag === "Some" && last.value._tag === "Completed"
                ? Effect.succeed(last.value.result)
                : Effect.dieMessage("the stream ended without Completed")
            )
          )
          : engine.generate(request, options)
        return Effect.gen(function*() {
          const startedAt = performance.now()
          const exit = yield* Effect.exit(generation)
          const millis = performance.now() - startedAt
          return Exit.match(exit, {
            onSuccess: (result): Outcome => ({
              _tag: result.isTemplate ? "Template" : "Content",
              result,
              millis,
              fallback: options.useFallback
            }),
            onFailure: (cause): Outcome =>
              Cause.isFailType(cause)
                ? { _tag: "TypedFailure", error: cause.error._tag, millis, fallback: options.useFallback }
                : { _tag: "Defect", cause: Cause.pretty(cause), millis, fallback: options.useFallback }
          })
        })
      }

      let peakRss = 0
      const sampleMemory = Effect.sync(() => {
        peakRss = Math.max(peakRss, process.memoryUsage().rss)
      })
      const supervisor = yield* Supervisor.track
      const startedAt = performance.now()
      const outcomes = yield* Effect.forEach(Array.from({ length: generations }, (_, i) => i), one, { concurrency })
        .pipe(
          Effect.supervised(supervisor),
          Effect.raceFirst(
            Effect.forever(Effect.zipRight(sampleMemory, Effect.sleep("100 millis"))).pipe(Effect.as([]))
          ),
          Effect.timeout("10 minutes"),
          // The template fallback's warnings would flood the output.
          Logger.withMinimumLogLevel(LogLevel.Error)
        )
      const wallMillis = performance.now() - startedAt
      yield* sampleMemory

      const byTag = (tag: Outcome["_tag"]) => outcomes.filter((o) => o._tag === tag)
      const stats = yield* simulator.stats
      const calls = (yield* counterTotal("plot_engine_provider_calls_total")) - callsBefore
      const slowest = Math.max(...outcomes.map((o) => o.millis))
      const failures: Record<string, number> = {}
      for (const o of outcomes) if (o._tag === "TypedFailure") failures[o.error] = (failures[o.error] ?? 0) + 1
      // The figures of the run, for the record.
      console.log(JSON.stringify({
        generations,
        concurrency,
        attemptsSeenBySimulator: stats.requests,
        callsReportedByEngine: calls,
        faults: stats.faults,
        closedByClient: stats.closedByClient,
        outcomes: { content: byTag("Content").length, template: byTag("Template").length, typedFailures: failures },
        wallSeconds: Number((wallMillis / 1000).toFixed(1)),
        slowestMillis: Math.round(slowest),
        peakRssMb: Math.round(peakRss / 2 ** 20)
      }))

      // Every generation resolved: content, template or typed failure; no defect; none past its deadline.
      expect(byTag("Defect").map((d) => d._tag === "Defect" && d.cause).slice(0, 3)).toEqual([])
      expect(outcomes.length).toBe(generations)
      expect(byTag("Content").length + byTag("Template").length + byTag("TypedFailure").length).toBe(generations)
      // Three attempts are not always enough: some generations ran out, as templates where the fallback was on and
      // typed failures where it was off (the chaos mix holds only transient faults).
      expect(byTag("Template").length + byTag("TypedFailure").length).toBeGreaterThan(0)
      expect(byTag("Template").every((o) => o.fallback)).toBe(true)
      expect(byTag("TypedFailure").every((o) => !o.fallback)).toBe(true)
      // The deadline, plus the scheduler's share after it fires.
      expect(slowest).toBeLessThan(deadlineMillis + 500)

      // No fiber of the soak is left running.
      const alive = yield* Effect.retry(
        Effect.filterOrFail(supervisor.value, (fibers) => fibers.length === 0),
        { schedule: Schedule.spaced("20 millis"), times: 50 }
      ).pipe(Effect.orElse(() => supervisor.value))
      expect(alive.length).toBe(0)

      // Every permit back; nothing queued or in flight.
      for (const key of yield* limiter.snapshot) {
        expect(key).toMatchObject({ queued: 0, inFlight: 0, permitsFree: key.quota.maxConcurrent })
      }

      // Attempts the engine reports = requests the simulator saw; every kind of the mix was served.
      expect(calls).toBe(stats.requests)
      for (const kind of Object.keys(Faults.chaosMix) as Array<Faults.FaultKind>) {
        expect(stats.faults[kind] ?? 0).toBeGreaterThan(0)
      }
    }).pipe(
      Effect.provide(Layer.mergeAll(
        GatewaySimulator.layer({ faults: { rates: Faults.chaosMix, rateLimitRetryAfterMs: 20 } }),
        NodeHttpClient.layerUndici,
        ProviderRateLimiter.layerMemory({ quotas: { openai: quota, anthropic: anthropicQuota }, adaptive: false })
      ))
    ),
  15 * 60_000
)
