/**
 * A paced simulator (`eventIntervalMs`) writes a stream as a provider does while the model writes it: each event on
 * its own, one interval after the one before, so that a client reads one event at a time. The engine streams over it
 * as over a stream written at once.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { expect, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Alerts from "../../src/Alerts.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { sampleProject } from "../utils/fixtures.js"

// Long enough that a loaded machine still reads the events apart, short enough for a whole outline in a few seconds.
const intervalMs = 5

/** Reads a streamed answer with `fetch`: how many reads it took, how many events came, and how long it took. */
const readStream = (url: string) =>
  Effect.promise(async () => {
    const started = performance.now()
    const response = await fetch(`${url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01" },
      body: JSON.stringify({
        model: "claude-haiku-4-5",
        max_tokens: 60,
        stream: true,
        messages: [{ role: "user", content: "Write a plot about Mara Quinn." }]
      })
    })
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let reads = 0
    let text = ""
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      reads++
      text += decoder.decode(read.value, { stream: true })
    }
    return {
      reads,
      events: text.split("\n\n").filter((event) => event.trim() !== "").length,
      ms: performance.now() - started
    }
  })

// Live services: the simulator paces its streams on the real clock.
layer(Layer.merge(GatewaySimulator.layer({ eventIntervalMs: intervalMs }), NodeHttpClient.layerUndici), {
  excludeTestServices: true
})(
  "a paced simulator",
  (it) => {
    it.effect("writes each event of a stream on its own, an interval apart", () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const { events, ms, reads } = yield* readStream(simulator.url)
        expect(events).toBeGreaterThan(10)
        // One read per event (a read may rarely take two, on a busy machine).
        expect(reads).toBeGreaterThanOrEqual(Math.floor(events * 0.8))
        expect(ms).toBeGreaterThanOrEqual((events - 1) * intervalMs)
      }))

    it.scoped("carries a whole streamed generation through the real client", () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const providers = yield* Providers.make({
          anthropic: { apiKey: Redacted.make("sk-ant-test"), baseUrl: simulator.anthropicBaseUrl }
        })
        const engine = yield* PlotGeneration.make().pipe(
          Effect.provideService(Providers.Providers, providers),
          Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
          Effect.provide(ProviderRateLimiter.layerUnlimited),
          Effect.provide(Alerts.layerDisabled)
        )
        const events = yield* Stream.runCollect(
          engine.generateStream({ projectId: "novel", userPrompt: "What happens next?", provider: "anthropic" }, {
            useFallback: false
          })
        ).pipe(Effect.map((chunk) => [...chunk]), Logger.withMinimumLogLevel(LogLevel.Warning))
        const last = events.at(-1)
        expect(last?._tag).toBe("Completed")
        if (last?._tag !== "Completed") return
        expect(last.result.isTemplate).toBe(false)
        // The outline reached the caller part by part, each beat as it was written.
        expect(events.filter((event) => event._tag === "BeatWritten").length).toBe(
          last.result.outline.acts.reduce((beats, act) => beats + act.beats.length, 0)
        )
      }), { timeout: 30_000 })
  }
)
