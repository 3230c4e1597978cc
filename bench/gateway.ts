/**
 * The gateway simulator in a process of its own (as `plot-engine simulate`), so that the benchmarks measure
 * the client side only, and a bare-SDK baseline and an engine built the way a host builds it.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as JSONSchema from "effect/JSONSchema"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

import OpenAI from "openai"
import * as Alerts from "../src/Alerts.js"
import { PlotOutline, PlotRequest, type PlotRequestInput } from "../src/Domain.js"
import * as ModelCatalog from "../src/ModelCatalog.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as PromptBuilder from "../src/PromptBuilder.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import type * as RetryPolicy from "../src/RetryPolicy.js"
import { nthRequest, sampleProject } from "./fixtures.js"

const root = fileURLToPath(new URL("..", import.meta.url))

export interface Gateway {
  readonly url: string
  readonly openaiBaseUrl: string
  readonly stop: () => void
  /** The CPU time the simulator's process has used so far, in milliseconds (`undefined` where `/proc` is not). */
  readonly cpuMillis: () => number | undefined
}

/** A process's CPU time (user and system) from `/proc/<pid>/stat`, in milliseconds; `undefined` without it. */
const processCpuMillis = (pid: number | undefined): number | undefined => {
  if (pid === undefined) return undefined
  try {
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th of them.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return ((Number(fields[11]) + Number(fields[12])) * 1_000) / 100
  } catch {
    return undefined
  }
}

/** Starts `plot-engine simulate` on a free port, with optional `--faults`; resolves once it listens. */
export const startGateway = (args: ReadonlyArray<string> = []): Promise<Gateway> =>
  new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", "simulate", "--port", "0", ...args],
      { cwd: root, stdio: ["ignore", "pipe", "inherit"] }
    )
    let output = ""
    child.stdout!.on("data", (data: Buffer) => {
      output += data.toString()
      const match = /listening on (http:\/\/\S+)/.exec(output)
      if (match !== null) {
        resolve({
          url: match[1]!,
          openaiBaseUrl: `${match[1]!}/v1`,
          stop: () => child.kill("SIGINT"),
          cpuMillis: () => processCpuMillis(child.pid)
        })
      }
    })
    child.once("exit", (code) => reject(new Error(`the simulator exited with ${code}: ${output}`)))
  })

/**
 * An engine over OpenAI at the gateway, as a host builds it (real client, undici), with logs at errors only and
 * no local rate limit (what is measured is the engine's own cost, and the gateway's faults).
 */
export const engineRuntime = (gateway: Gateway, options: { readonly retryPolicy?: RetryPolicy.Policy } = {}) =>
  ManagedRuntime.make(
    PlotGeneration.layer(options).pipe(
      Layer.provide(
        Providers.layer({ openai: { apiKey: Redacted.make("sk-bench-0123456789"), baseUrl: gateway.openaiBaseUrl } })
      ),
      Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
      Layer.provide(ProviderRateLimiter.layerUnlimited),
      Layer.provide(Alerts.layerDisabled),
      Layer.provide(NodeHttpClient.layerUndici),
      Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
    )
  )

/**
 * Runs `task(i)` for i in 0..n-1, `concurrency` at a time; returns each one's latency in milliseconds, the wall
 * time and the CPU time this process used meanwhile (microseconds, user and system, GC included).
 */
export const pool = async <A>(n: number, concurrency: number, task: (i: number) => Promise<A>) => {
  const latencies: Array<number> = []
  const results: Array<A> = []
  let next = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      const start = performance.now()
      results[i] = await task(i)
      latencies.push(performance.now() - start)
    }
  }
  const start = performance.now()
  const cpuAtStart = process.cpuUsage()
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  const cpu = process.cpuUsage(cpuAtStart)
  return { latencies, results, wallMillis: performance.now() - start, cpuMicros: cpu.user + cpu.system }
}

/** The prompt the engine builds for the `i`-th request on an OpenAI model, for the baselines to send. */
const prompts = (modelId: string, request: PlotRequestInput) => {
  const model = ModelCatalog.find(ModelCatalog.defaultCatalog, "openai", modelId)
  if (model._tag === "None") throw new Error(`unknown model ${modelId}`)
  return (i: number) => PromptBuilder.build(new PlotRequest(nthRequest(request, i)), sampleProject, model.value)
}

/**
 * The official `openai` SDK making the call the engine makes for a request (the same messages, output limit,
 * temperature and JSON schema) with nothing around it; `options` are the SDK's own (retries, timeout).
 */
export const sdkGenerate = (
  gateway: Gateway,
  modelId: string,
  request: PlotRequestInput,
  options: { readonly maxRetries?: number; readonly timeout?: number } = { maxRetries: 0 }
) => {
  const promptOf = prompts(modelId, request)
  const sdk = new OpenAI({ apiKey: "sk-bench-0123456789", baseURL: gateway.openaiBaseUrl, ...options })
  const schema = JSONSchema.make(PlotOutline) as unknown as Record<string, unknown>
  return async (i: number) => {
    const built = promptOf(i)
    const response = await sdk.responses.create({
      model: modelId,
      input: [{ role: "system", content: built.system }, { role: "user", content: built.user }],
      max_output_tokens: built.maxOutputTokens,
      ...(built.temperature === undefined ? {} : { temperature: built.temperature }),
      text: { format: { type: "json_schema", name: "plot_outline", schema, strict: false } }
    })
    return JSON.parse(response.output_text) as unknown
  }
}

/**
 * The `@effect/ai-openai` client alone (as `Providers` configures it), asked for the same structured output
 * with `LanguageModel.generateObject`: what the engine's provider client costs before the engine adds anything.
 */
export const effectAiGenerate = async (gateway: Gateway, modelId: string, request: PlotRequestInput) => {
  const promptOf = prompts(modelId, request)
  const runtime = ManagedRuntime.make(
    Layer.scoped(
      Providers.Providers,
      Providers.make({ openai: { apiKey: Redacted.make("sk-bench-0123456789"), baseUrl: gateway.openaiBaseUrl } })
    ).pipe(Layer.provide(NodeHttpClient.layerUndici))
  )
  const probe = promptOf(0)
  const languageModel = await runtime.runPromise(
    Effect.flatMap(
      Providers.Providers,
      (providers) =>
        providers.languageModel("openai", modelId, {
          maxOutputTokens: probe.maxOutputTokens,
          temperature: probe.temperature
        })
    )
  )
  const generate = (i: number) =>
    runtime.runPromise(
      LanguageModel.generateObject({ prompt: promptOf(i).prompt, schema: PlotOutline, objectName: "plot_outline" })
        .pipe(
          Effect.provideService(LanguageModel.LanguageModel, languageModel)
        )
    )
  return { generate, dispose: () => runtime.dispose() }
}
