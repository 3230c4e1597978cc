/**
 * Benchmark `faults`: the same requests through the chaos mix of the reliability soak (10 % 429 with
 * retry-after, 5 % 500, 3 % overloaded, 2 % each of hangs, resets, malformed JSON and mid-stream errors), from
 * the engine and from the official `openai` SDK with its own retries (its default of 2). Both give an attempt
 * 5 seconds. Success is real content; the engine's template fallback is counted apart.
 */
import * as Effect from "effect/Effect"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import { nthRequest, percentile } from "./fixtures.js"
import { engineRuntime, pool, sdkGenerate, startGateway } from "./gateway.js"

const requests = Number(process.env.FAULTS_REQUESTS ?? 400)
const concurrency = 16
const request = {
  projectId: "novel",
  userPrompt: "What does Mara find under the floor of the lamp room?",
  provider: "openai" as const
}

type Outcome = "content" | "template" | "failure"

const summarize = (client: string, run: { latencies: Array<number>; results: Array<Outcome>; wallMillis: number }) => {
  const count = (outcome: Outcome) => run.results.filter((r) => r === outcome).length
  return {
    row: {
      client,
      requests: run.results.length,
      content: count("content"),
      template: count("template"),
      failed: count("failure"),
      successRate: Number((count("content") / run.results.length).toFixed(3)),
      p50Ms: Math.round(percentile(run.latencies, 50)),
      p90Ms: Math.round(percentile(run.latencies, 90)),
      p99Ms: Math.round(percentile(run.latencies, 99)),
      wallSeconds: Number((run.wallMillis / 1000).toFixed(1))
    },
    latencies: run.latencies.map(Math.round)
  }
}

export const run = async () => {
  const gateway = await startGateway(["--faults", "chaos"])
  const runtime = engineRuntime(gateway, {
    retryPolicy: { ...RetryPolicy.defaults, attemptTimeout: "5 seconds", deadline: "2 minutes" }
  })
  try {
    const engine = (i: number) =>
      runtime.runPromise(
        PlotGeneration.PlotGeneration.pipe(
          Effect.flatMap((service) => service.generate(nthRequest(request, i))),
          Effect.map((result): Outcome => (result.isTemplate ? "template" : "content")),
          Effect.orElseSucceed((): Outcome => "failure")
        )
      )
    const model = (await runtime.runPromise(Effect.flatMap(PlotGeneration.PlotGeneration, (s) =>
      s.generate(request)))).model
    const sdk = sdkGenerate(gateway, model === "template" ? "gpt-4.1-mini" : model, request, {
      maxRetries: 2,
      timeout: 5_000
    })
    const bare = (i: number) => sdk(i).then((): Outcome => "content", (): Outcome => "failure")

    const engineRun = summarize("engine", await pool(requests, concurrency, engine))
    const sdkRun = summarize("openai SDK (maxRetries 2)", await pool(requests, concurrency, bare))
    return {
      rows: [engineRun.row, sdkRun.row],
      latencies: { engine: engineRun.latencies, sdk: sdkRun.latencies },
      target: "success rate under faults above the official SDK's"
    }
  } finally {
    await runtime.dispose()
    gateway.stop()
  }
}
