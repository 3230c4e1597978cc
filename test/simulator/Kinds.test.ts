import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import * as Alerts from "../../src/Alerts.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as InProcess from "../../src/simulator/InProcess.js"
import { sampleProject } from "../utils/fixtures.js"

const engineOverSimulator = () => {
  const simulator = InProcess.make({ seed: 3 })
  return PlotGeneration.layer().pipe(
    Layer.provide(
      Providers.layerModels({ openai: (model, parameters) => simulator.languageModel("openai", model, parameters) })
    ),
    Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
    Layer.provide(ProviderRateLimiter.layerUnlimited),
    Layer.provide(Alerts.layerDisabled)
  )
}

const headings = (content: string) => content.split("\n").filter((line) => line.startsWith("## "))

describe("the engine over the simulator, per kind", () => {
  const cases = [
    { kind: "outline", heading: /^## Act \d: /, acts: (n: number) => n === 3 },
    { kind: "scene_beats", heading: /^## Scene: /, acts: (n: number) => n === 1 },
    { kind: "suggestions", heading: /^## Option \d: /, acts: (n: number) => n >= 3 }
  ] as const

  for (const { acts, heading, kind } of cases) {
    it.effect(`${kind}: the answer has the kind's shape and headings, streamed or not`, () =>
      Effect.gen(function*() {
        const engine = yield* PlotGeneration.PlotGeneration
        const request = {
          projectId: "novel",
          userPrompt: "What happens at the Drowned Bell?",
          provider: "openai" as const,
          model: "gpt-4.1",
          kind
        }
        const plain = yield* engine.generate(request, { useFallback: false })
        expect(acts(plain.outline.acts.length)).toBe(true)
        expect(headings(plain.content).length).toBe(plain.outline.acts.length)
        for (const line of headings(plain.content)) expect(line).toMatch(heading)

        const events = Chunk.toArray(yield* Stream.runCollect(engine.generateStream(request, { useFallback: false })))
        const last = events.at(-1)
        const result = last?._tag === "Completed" ? last.result : undefined
        expect(result?.isTemplate).toBe(false)
        // The stream heads each act as the kind reads it, so its Markdown is the result's, piece by piece.
        const prose = events.flatMap((e) => (e._tag === "TextDelta" ? [e.delta] : [])).join("")
        expect(prose).toBe(result?.content)
        for (const line of headings(prose)) expect(line).toMatch(heading)
      }).pipe(Effect.provide(engineOverSimulator())))
  }
})
