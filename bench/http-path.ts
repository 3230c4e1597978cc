/**
 * Benchmark `http-path`: `generate` through the real `@effect/ai-openai` client to the simulator (its own
 * process, loopback) at concurrency 1, 16 and 64, beside the official `openai` SDK sending the same request
 * (the same messages, output limit and JSON schema) with nothing around it, and the `@effect/ai-openai` client
 * alone making the call. The ratios say what the client costs and what the engine adds. On loopback, with the
 * simulator on the same cores, throughput is bound by CPU: each row also says what a request cost in CPU, in
 * this process (the client's side) and in the simulator's (the same answer for every client, so that its share
 * shows whether the requests differ).
 */
import * as Effect from "effect/Effect"
import * as PlotGeneration from "../src/PlotGeneration.js"
import { nthRequest, percentile } from "./fixtures.js"
import { effectAiGenerate, engineRuntime, pool, sdkGenerate, startGateway } from "./gateway.js"

const request = {
  projectId: "novel",
  userPrompt: "What does Mara find under the floor of the lamp room?",
  provider: "openai" as const
}
const concurrencies = [1, 16, 64]
const requestsAt = (concurrency: number) => (concurrency === 1 ? 100 : 400)
const rounds = 3

interface Run {
  readonly latencies: Array<number>
  readonly wallMillis: number
  /** CPU time of this process over the run, in microseconds. */
  readonly cpuMicros: number
  /** CPU time of the simulator's process over the run, in milliseconds, where it can be read. */
  readonly simulatorCpuMillis: number | undefined
}

interface Row {
  readonly concurrency: number
  readonly client: "engine" | "@effect/ai client alone" | "openai SDK"
  readonly requests: number
  readonly throughputPerSecond: number
  readonly p50Ms: number
  readonly p99Ms: number
  /** Client-side CPU per request (this process: the client, the engine around it, GC), in milliseconds. */
  readonly clientCpuMsPerRequest: number
  /** The simulator's CPU per request, in milliseconds (`null` where it cannot be read). */
  readonly simulatorCpuMsPerRequest: number | null
}

const row = (concurrency: number, client: Row["client"], run: Run): Row => ({
  concurrency,
  client,
  requests: run.latencies.length,
  throughputPerSecond: Math.round((run.latencies.length / run.wallMillis) * 1000),
  p50Ms: Number(percentile(run.latencies, 50).toFixed(2)),
  p99Ms: Number(percentile(run.latencies, 99).toFixed(2)),
  clientCpuMsPerRequest: Number((run.cpuMicros / 1_000 / run.latencies.length).toFixed(3)),
  simulatorCpuMsPerRequest: run.simulatorCpuMillis === undefined
    ? null
    : Number((run.simulatorCpuMillis / run.latencies.length).toFixed(3))
})

export const run = async () => {
  const gateway = await startGateway()
  const runtime = engineRuntime(gateway)
  try {
    const engine = (i: number) =>
      runtime.runPromise(
        PlotGeneration.PlotGeneration.pipe(
          Effect.flatMap((service) => service.generate(nthRequest(request, i))),
          Effect.filterOrDieMessage(
            (result) => !result.isTemplate,
            "the benchmark's generation fell back to the template"
          )
        )
      )
    // The model the engine chooses, and the same prompt for the bare SDK.
    const first = await engine(0)
    const bare = sdkGenerate(gateway, first.model, request)
    const client = await effectAiGenerate(gateway, first.model, request)
    // Warm every path (JIT, connections, the engine's token cache).
    await pool(100, 16, engine)
    await pool(100, 16, client.generate)
    await pool(100, 16, bare)

    // A run of a pool, with the simulator's CPU time over it.
    const measured = async (n: number, concurrency: number, task: (i: number) => Promise<unknown>): Promise<Run> => {
      const simulatorAtStart = gateway.cpuMillis()
      const { cpuMicros, latencies, wallMillis } = await pool(n, concurrency, task)
      const simulatorAtEnd = gateway.cpuMillis()
      return {
        latencies,
        wallMillis,
        cpuMicros,
        simulatorCpuMillis: simulatorAtStart === undefined || simulatorAtEnd === undefined
          ? undefined
          : simulatorAtEnd - simulatorAtStart
      }
    }

    // Three rounds per concurrency, the clients taking turns within each, so that the VM's drift over a run
    // falls on all three alike; each client's figures are over its three rounds together.
    const rows: Array<Row> = []
    for (const concurrency of concurrencies) {
      const runs = {
        "openai SDK": [] as Array<Run>,
        "@effect/ai client alone": [] as Array<Run>,
        engine: [] as Array<Run>
      }
      for (let round = 0; round < rounds; round++) {
        const n = requestsAt(concurrency)
        runs["openai SDK"].push(await measured(n, concurrency, bare))
        runs["@effect/ai client alone"].push(await measured(n, concurrency, client.generate))
        runs.engine.push(await measured(n, concurrency, engine))
      }
      for (const [name, clientRuns] of Object.entries(runs)) {
        rows.push(row(concurrency, name as Row["client"], {
          latencies: clientRuns.flatMap((r) => r.latencies),
          wallMillis: clientRuns.reduce((sum, r) => sum + r.wallMillis, 0),
          cpuMicros: clientRuns.reduce((sum, r) => sum + r.cpuMicros, 0),
          simulatorCpuMillis: clientRuns.some((r) => r.simulatorCpuMillis === undefined)
            ? undefined
            : clientRuns.reduce((sum, r) => sum + r.simulatorCpuMillis!, 0)
        }))
      }
    }
    await client.dispose()
    const ratio = (concurrency: number, client: Row["client"]) => {
      const clientRow = rows.find((r) => r.concurrency === concurrency && r.client === client)!
      const sdkRow = rows.find((r) => r.concurrency === concurrency && r.client === "openai SDK")!
      return Number((clientRow.throughputPerSecond / sdkRow.throughputPerSecond).toFixed(3))
    }
    return {
      model: first.model,
      rows,
      throughputRatio: Object.fromEntries(concurrencies.map((c) => [`c${c}`, ratio(c, "engine")])),
      clientAloneRatio: Object.fromEntries(concurrencies.map((c) => [`c${c}`, ratio(c, "@effect/ai client alone")])),
      target: "engine throughput >= 90 % of the bare SDK's at concurrency 16"
    }
  } finally {
    await runtime.dispose()
    gateway.stop()
  }
}
