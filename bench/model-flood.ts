/**
 * Benchmark `model-flood`: what the engine keeps when a client names a new model on every request (a server that
 * lets requests pin any model, `pinnedModels: "any"`, the library's default). Each name is a limiter key, a circuit,
 * metric series and cache entries; the provider answers 404 and the generation fails (`ModelNotFoundError`). The
 * engine runs over the simulator's in-process face (its prompt cache off, so that only the engine's memory grows)
 * with the in-memory limiter (`maxConcurrent` 5, a quota too roomy to pace it), one generation after another; the heap is measured
 * after a full collection, against the same number of generations on one catalog model.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Alerts from "../src/Alerts.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as InProcess from "../src/simulator/InProcess.js"
import { sampleProject } from "./fixtures.js"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const heapMb = () => {
  gc()
  return process.memoryUsage().heapUsed / 2 ** 20
}

const engineLayer = () => {
  const simulator = InProcess.make({ promptCache: false })
  return PlotGeneration.layer({ pinnedModels: "any" }).pipe(
    Layer.provide(Providers.layerModels({
      openai: (model, parameters) => simulator.languageModel("openai", model, parameters)
    })),
    Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
    // Roomy, so that the one-model run is not paced by its quota; each name is a key of its own either way.
    Layer.provide(ProviderRateLimiter.layerMemory({
      quotas: { openai: { requestsPerMinute: 10_000_000, tokensPerMinute: 10_000_000_000, maxConcurrent: 5 } }
    })),
    Layer.provide(Alerts.layerDisabled)
  )
}

/** Heap kept after `counts` generations (each a checkpoint), `model(i)` pinned by the i-th. */
const kept = (counts: ReadonlyArray<number>, model: (i: number) => string | undefined) =>
  Effect.gen(function*() {
    const engine = yield* PlotGeneration.PlotGeneration
    const generate = (i: number) =>
      engine.generate({
        projectId: "novel",
        userPrompt: `What does Mara find under the floor? (${i})`,
        provider: "openai",
        ...(model(i) === undefined ? {} : { model: model(i) })
      }).pipe(Effect.exit)
    // Warm-up: the engine's, the simulator's and V8's first allocations are not the flood's.
    for (let i = 0; i < 500; i++) yield* generate(i)
    const before = heapMb()
    const rows: Array<{ generations: number; heapKeptMb: number }> = []
    let done = 0
    for (const count of counts) {
      for (; done < count; done++) yield* generate(500 + done)
      rows.push({ generations: count, heapKeptMb: Number((heapMb() - before).toFixed(1)) })
    }
    return rows
  }).pipe(Effect.provide(engineLayer()), Logger.withMinimumLogLevel(LogLevel.None))

export const run = () =>
  Effect.runPromise(Effect.gen(function*() {
    const counts = [10_000, 30_000, 60_000]
    const newNames = yield* kept(counts, (i) => `made-up-model-${i}`)
    const oneModel = yield* kept([counts[0]!], () => undefined)
    const last = newNames.at(-1)!
    const middle = newNames[1]!
    return {
      rows: newNames.map((row) => ({ ...row, bytesPerName: Math.round((row.heapKeptMb * 2 ** 20) / row.generations) })),
      oneModelHeapKeptMbAt10k: oneModel[0]!.heapKeptMb,
      // What each name past 30,000 added: bounded state adds none.
      bytesPerNameFrom30kTo60k: Math.round(
        ((last.heapKeptMb - middle.heapKeptMb) * 2 ** 20) / (last.generations - middle.generations)
      )
    }
  }))
