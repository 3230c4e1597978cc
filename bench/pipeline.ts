/**
 * Benchmark `pipeline`: what the engine adds around a model call. `generate` on an instant in-process model
 * versus a bare `LanguageModel.generateText` on the same model, for the small sample project and a
 * 50,000-token project, with the token cache cold (a fresh engine) and warm: microseconds per request. Beside
 * it, the bare structured call the engine makes (`generateText` forcing the outline tool; `@effect/ai` is patched
 * to make its response decoders once per toolkit, see `patches/`), and that call with a timeout and a span, as
 * any caller that bounds and traces its calls makes it. Times are CPU time of the process (user and system, GC
 * included), which a machine shared with other work inflates far less than the wall clock.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Alerts from "../src/Alerts.js"
import type { ProjectContext } from "../src/Domain.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as ResponseParser from "../src/ResponseParser.js"
import { largeProject } from "./context.js"
import { median, nthRequest, sampleProject } from "./fixtures.js"

/** A valid outline naming the sample project's people, as the model's whole answer. */
export const answer = JSON.stringify({
  title: "The Lamp Beneath",
  logline: "Mara Quinn must decide whether to renew the bargain with the sea.",
  acts: [{
    title: "Setup",
    summary: "The light fails and Mara Quinn finds the blue cloth under the floor of the lamp room.",
    beats: [
      {
        summary: "Mara Quinn climbs to the lamp room and counts the steps.",
        characters: ["Mara Quinn"],
        location: "Saltmarsh Light"
      },
      {
        summary: "Elias Thorne asks why the light failed, and smiles at the harbour.",
        characters: ["Elias Thorne"],
        location: ""
      }
    ]
  }]
})

const parts: Array<Response.PartEncoded> = [
  { type: "text", text: answer },
  { type: "finish", reason: "stop", usage: { inputTokens: 1_000, outputTokens: 300, totalTokens: 1_300 } }
]

/** Answers at once, the same outline every time. */
const instantModel = LanguageModel.make({
  generateText: () => Effect.succeed(parts),
  streamText: () => Effect.dieMessage("not streamed in this benchmark") as never
})

const request = {
  projectId: "novel",
  userPrompt: "What does Mara find under the floor of the lamp room?",
  provider: "openai" as const
}

const quiet = Logger.withMinimumLogLevel(LogLevel.Error)

/** CPU time of the process so far, in microseconds (user and system). */
const cpuMicros = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}

/** Microseconds of CPU per run of `effect`: the median of five batches of `n / 5` sequential runs (the VM is noisy). */
const perRequest = <E>(n: number, effect: (i: number) => Effect.Effect<unknown, E>) =>
  Effect.gen(function*() {
    const batches: Array<number> = []
    const size = Math.max(1, Math.floor(n / 5))
    for (let batch = 0; batch < 5; batch++) {
      const start = cpuMicros()
      for (let i = 0; i < size; i++) yield* effect(batch * size + i)
      batches.push((cpuMicros() - start) / size)
    }
    return median(batches)
  })

/**
 * Microseconds of CPU per run of each path, measured in turns: after 3,000 runs of each (V8 optimizes a call graph
 * this deep only after a few thousand runs: after 500, the project measured first ran a third slower than the
 * second), eight rounds of a batch of 1,000 runs per path, the order rotating each round (each path first twice);
 * each path's figure is the median of its batches. The VM's speed drifts over seconds; taking turns puts the drift on
 * every path alike, and the ratio of two paths is the median of their ratios within a round, a few seconds apart at
 * most.
 */
const inTurns = <K extends string>(paths: Record<K, (i: number) => Effect.Effect<unknown, unknown>>) =>
  Effect.gen(function*() {
    const names = Object.keys(paths) as Array<K>
    const batches = new Map<K, Array<number>>(names.map((name) => [name, []]))
    const size = 1_000
    const rounds = 8
    for (const name of names) for (let i = 0; i < 3_000; i++) yield* paths[name](i)
    for (let round = 0; round < rounds; round++) {
      for (let turn = 0; turn < names.length; turn++) {
        const name = names[(round + turn) % names.length]!
        const start = cpuMicros()
        for (let i = 0; i < size; i++) yield* paths[name](round * size + i)
        batches.get(name)!.push((cpuMicros() - start) / size)
      }
    }
    return {
      micros: Object.fromEntries(names.map((name) => [name, median(batches.get(name)!)])) as Record<K, number>,
      ratio: (of: K, to: K) => median(batches.get(of)!.map((micros, round) => micros / batches.get(to)![round]!))
    }
  })

const measure = (project: ProjectContext, label: string) =>
  Effect.gen(function*() {
    const model = yield* instantModel
    const makeEngine = PlotGeneration.make().pipe(
      Effect.provide(Providers.layerModels({ openai: () => Effect.succeed(model) })),
      Effect.provide(ProjectContextStore.layerMemory({ novel: project })),
      Effect.provide(ProviderRateLimiter.layerUnlimited),
      Effect.provide(Alerts.layerDisabled)
    )
    const generate = (engine: PlotGeneration.Service) => (i: number) =>
      engine.generate(nthRequest(request, i)).pipe(
        Effect.filterOrDieMessage(
          (result) => !result.isTemplate,
          "the benchmark's generation fell back to the template"
        )
      )
    const bare = (i: number) =>
      LanguageModel.generateText({ prompt: nthRequest(request, i).userPrompt }).pipe(
        Effect.provideService(LanguageModel.LanguageModel, model)
      )
    const bareStructured = (i: number) =>
      LanguageModel.generateText({
        prompt: nthRequest(request, i).userPrompt,
        toolkit: ResponseParser.outlineToolkit,
        toolChoice: { tool: "plot_outline" },
        disableToolCallResolution: true
      }).pipe(Effect.provideService(LanguageModel.LanguageModel, model))
    // The same call timed out after a minute and traced by a span: what any caller that bounds and traces its
    // calls pays, before doing anything else.
    const guardedStructured = (i: number) =>
      bareStructured(i).pipe(
        Effect.timeoutFail({ duration: "1 minute", onTimeout: () => "timed out" }),
        Effect.withSpan("bench.call", { captureStackTrace: false })
      )

    // Cold: a fresh engine (empty token cache) for each request.
    const coldRuns = project === sampleProject ? 200 : 5
    const cold = yield* perRequest(coldRuns, (i) => Effect.flatMap(makeEngine, (engine) => generate(engine)(i)))
    // Warm: one engine, the project's counts cached after its first requests.
    const engine = yield* makeEngine
    const turns = yield* inTurns({
      warm: generate(engine),
      bareMicros: bare,
      structuredMicros: bareStructured,
      guardedMicros: guardedStructured
    })
    const { bareMicros, guardedMicros, structuredMicros, warm } = turns.micros
    return {
      project: label,
      bareGenerateTextUs: Math.round(bareMicros),
      bareGenerateObjectUs: Math.round(structuredMicros),
      timedTracedObjectUs: Math.round(guardedMicros),
      engineWarmUs: Math.round(warm),
      engineColdUs: Math.round(cold),
      warmOverheadUs: Math.round(warm - bareMicros),
      warmOverheadOverObjectUs: Math.round(warm - structuredMicros),
      warmOverheadOverTimedTracedUs: Math.round(warm - guardedMicros),
      warmRatio: Number(turns.ratio("warm", "bareMicros").toFixed(2))
    }
  }).pipe(quiet)

export const run = () =>
  Effect.runPromise(Effect.gen(function*() {
    const rows = [
      yield* measure(sampleProject, "small (sample)"),
      yield* measure(largeProject(50_000), "50,000 tokens")
    ]
    return { rows, target: "warm `generate` at most 3x a bare `generateText` (warmRatio <= 3)" }
  }))
