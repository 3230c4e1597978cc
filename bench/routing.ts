/**
 * Benchmark `routing`: the engine over several deployments of one model, against the simulator's in-process face in
 * virtual time, each deployment a simulator of its own (its key, its quota, its faults). Every call takes 2 s at the
 * provider; each deployment's quota is 60 requests and 90,000 tokens a minute, 5 at a time, and the engine's
 * limiter is configured with it. Four runs:
 *
 * - `twoDeploymentThroughputRatio`: 200 generations submitted at once, over one deployment and over two; the ratio
 *   of the times they took (goal at least 1.9), with the provider 429s met (goal none);
 * - `oneFailingContentRate`: the same over two deployments of which one answers 500 to everything: the share of
 *   generations with the model's content, not a template (goal at least 0.99);
 * - `interactiveP95WaitMs` and `batchUtilization`: 20 interactive generations arriving one every 5 s while a
 *   200-generation batch runs over one deployment: the 95th percentile of their time to a result, and the share of
 *   the quota the whole run used, by the limit that binds (goals at most 5,000 ms and at least 0.95).
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Alerts from "../src/Alerts.js"
import * as Deployments from "../src/Deployments.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import type * as Faults from "../src/simulator/Faults.js"
import * as InProcess from "../src/simulator/InProcess.js"
import { percentile, sampleProject } from "./fixtures.js"
import { runInVirtualTime } from "./virtual-time.js"

const model = "gpt-4.1"
const latencyMs = 2_000
const quota = { requestsPerMinute: 60, tokensPerMinute: 90_000 }
const batchSize = Number(process.env.ROUTING_BATCH ?? 200)
const interactiveCount = 20
const goals = {
  twoDeploymentThroughputRatio: 1.9,
  oneFailingContentRate: 0.99,
  interactiveP95WaitMs: 5_000,
  batchUtilization: 0.95
}

/** A deployment of gpt-4.1 with the benchmark's quota. */
const deployment = (id: string): Deployments.Deployment => ({
  id,
  dialect: "openai-responses",
  baseUrl: undefined,
  apiKey: Redacted.make(`sk-${id}`),
  headers: {},
  models: [{ model, quota: { ...quota, maxConcurrent: 5 } }],
  weight: 1
})

interface Setup {
  readonly id: string
  readonly rates?: Faults.RandomFaults["rates"]
}

/**
 * The engine over the deployments, each a simulator of its own, with limits long enough for the whole run (a queued
 * generation waits for the quota rather than failing at the default deadline). The simulators, for their counts.
 */
const engineOver = (setups: ReadonlyArray<Setup>) => {
  const simulators = setups.map((setup) =>
    InProcess.make({
      apiKey: `sk-${setup.id}`,
      quotas: { openai: quota },
      faults: { latencyMs, ...(setup.rates === undefined ? {} : { rates: setup.rates }) },
      promptCache: false
    })
  )
  const deployments = setups.map((setup) => deployment(setup.id))
  const make = PlotGeneration.make({
    retryPolicy: { ...RetryPolicy.defaults, deadline: "2 hours", attemptTimeout: "1 minute" }
  }).pipe(
    Effect.provide(Providers.layerDeploymentModels(deployments.map((d, i) => ({
      deployment: d,
      models: (name, parameters) => simulators[i]!.languageModel("openai", name, parameters)
    })))),
    Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
    Effect.provide(ProviderRateLimiter.layerMemory({
      keyQuotas: Deployments.keyQuotas(deployments),
      queueTimeout: "2 hours",
      adaptive: false
    })),
    Effect.provide(Alerts.layerDisabled)
  )
  return { make, simulators }
}

const request = (i: number) => ({
  projectId: "novel",
  userPrompt: `What happens in chapter ${i + 1}?`,
  provider: "openai" as const,
  model,
  targetWordCount: 300
})

/** `count` generations at once; their results and the virtual time they took. */
const batch = (setups: ReadonlyArray<Setup>, count: number) => {
  const { make, simulators } = engineOver(setups)
  const run = runInVirtualTime(
    Effect.flatMap(
      make,
      (engine) =>
        Effect.forEach(
          Array.from({ length: count }, (_, i) => i),
          (i) => engine.generate(request(i), { lane: "batch" }),
          {
            concurrency: "unbounded"
          }
        )
    ).pipe(Effect.withRandom(Random.make(7)), Logger.withMinimumLogLevel(LogLevel.None))
  )
  return {
    results: run.value,
    millis: run.millis,
    limited: simulators.reduce((sum, s) => sum + s.counts.limited, 0),
    requests: simulators.reduce((sum, s) => sum + s.counts.requests, 0)
  }
}

/** 20 interactive generations, one every 5 s, while a batch runs: their times to a result, and the run's. */
const interactiveDuringBatch = () => {
  const { make, simulators } = engineOver([{ id: "only" }])
  const run = runInVirtualTime(
    Effect.gen(function*() {
      const engine = yield* make
      const batchFiber = yield* Effect.fork(
        Effect.forEach(
          Array.from({ length: batchSize }, (_, i) => i),
          (i) => engine.generate(request(i), { lane: "batch" }),
          {
            concurrency: "unbounded"
          }
        )
      )
      const interactive = yield* Effect.forEach(
        Array.from({ length: interactiveCount }, (_, i) => i),
        (i) =>
          Effect.delay(
            Effect.map(engine.generate(request(10_000 + i)), (result) => result.durationMs),
            `${5 * (i + 1)} seconds`
          ),
        { concurrency: "unbounded" }
      )
      yield* Fiber.join(batchFiber)
      return interactive
    }).pipe(Effect.withRandom(Random.make(7)), Logger.withMinimumLogLevel(LogLevel.None))
  )
  const { requestedTokens, requests } = simulators[0]!.counts
  const minutes = run.millis / 60_000
  return {
    waits: run.value,
    // The share of what the quota allowed over the run, by the limit that bound (here the tokens, counted as OpenAI
    // counts them: the prompt and the max output asked for). The buckets start full: a minute's worth is free.
    utilization: Math.max(
      requests / ((minutes + 1) * quota.requestsPerMinute),
      requestedTokens / ((minutes + 1) * quota.tokensPerMinute)
    ),
    millis: run.millis
  }
}

const round2 = (x: number) => Number(x.toFixed(2))

export const run = () => {
  const one = batch([{ id: "a" }], batchSize)
  const two = batch([{ id: "a" }, { id: "b" }], batchSize)
  const failing = batch([{ id: "a" }, { id: "b", rates: { server_error: 1 } }], batchSize)
  const interactive = interactiveDuringBatch()
  const content = failing.results.filter((result) => !result.isTemplate).length / failing.results.length
  return {
    batchSize,
    oneDeploymentSeconds: round2(one.millis / 1_000),
    twoDeploymentSeconds: round2(two.millis / 1_000),
    twoDeploymentThroughputRatio: round2(one.millis / two.millis),
    providerRateLimits: one.limited + two.limited,
    oneFailingContentRate: round2(content),
    oneFailingTemplates: failing.results.filter((result) => result.isTemplate).length,
    oneFailingRequests: failing.requests,
    interactiveP95WaitMs: Math.round(percentile(interactive.waits, 0.95)),
    interactiveMaxWaitMs: Math.max(...interactive.waits),
    batchUtilization: round2(interactive.utilization),
    goals
  }
}
