import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as JSONSchema from "effect/JSONSchema"
import * as Schema from "effect/Schema"
import { PlotOutline } from "../../src/Domain.js"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import * as PromptBuilder from "../../src/PromptBuilder.js"
import * as Content from "../../src/simulator/Content.js"
import * as Core from "../../src/simulator/Core.js"
import { request, sampleProject } from "../utils/fixtures.js"

const gpt41 = ModelCatalog.defaultCatalog.find((m) => m.id === "gpt-4.1")!
const built = PromptBuilder.build(request({ targetWordCount: 600 }), sampleProject, gpt41)
const promptText = `${built.system}\n\n${built.user}`
const simRequest = (fields: Partial<Core.SimRequest> = {}): Core.SimRequest => ({
  dialect: "openai",
  model: "gpt-4.1",
  prompt: promptText,
  maxOutputTokens: built.maxOutputTokens,
  stream: false,
  jsonSchema: JSONSchema.make(PlotOutline),
  ...fields
})

describe("Content.castOf", () => {
  it("reads the characters, places and threads out of project data in a prompt", () => {
    const cast = Content.castOf(promptText)
    expect(cast.characters).toContain("Mara Quinn")
    expect(cast.places).toContain("Saltmarsh Light")
    expect(cast.threads).toContain("The cracked lens")
  })

  it("falls back to the capitalised names of a plain prompt", () => {
    expect(Content.castOf("A story about Anna Karenina and Count Vronsky in Moscow").characters).toContain(
      "Anna Karenina"
    )
  })
})

describe("Core.respond", () => {
  it("is deterministic for a request and a seed, and varies with the seed", () => {
    expect(Core.respond(simRequest(), 7)).toEqual(Core.respond(simRequest(), 7))
    expect(Core.respond(simRequest(), 7)).not.toEqual(Core.respond(simRequest(), 8))
  })

  it("writes structured output that conforms to the requested schema, for any seed", () => {
    for (let seed = 0; seed < 25; seed++) {
      const reply = Core.respond(simRequest(), seed)
      expect(reply._tag).toBe("Reply")
      if (reply._tag === "Reply") {
        expect(Either.isRight(Schema.decodeUnknownEither(PlotOutline)(reply.object))).toBe(true)
      }
    }
  })

  it("answers a text request that shows a schema with JSON in a fence", () => {
    const reply = Core.respond(simRequest({ jsonSchema: undefined }), 1)
    expect(reply._tag === "Reply" && reply.text).toMatch(/```json\n\{/)
  })

  it("builds beats from the project's own people and places", () => {
    const reply = Core.respond(simRequest(), 3)
    const outline = reply._tag === "Reply" ? Schema.decodeUnknownSync(PlotOutline)(reply.object) : undefined
    const beat = outline!.acts[0]!.beats[0]!
    for (const name of beat.characters) expect(beat.summary).toContain(name)
    expect([
      "Saltmarsh Light",
      "Greyhaven Harbour",
      "The Drowned Bell",
      "Netmender's Row",
      "The Teeth",
      "St. Brendan's Church"
    ])
      .toContain(beat.location)
  })

  it("keeps within the output limit", () => {
    const reply = Core.respond(
      simRequest({ jsonSchema: undefined, prompt: "Tell a long story about Mara.", maxOutputTokens: 100 }),
      1
    )
    expect(reply._tag === "Reply" && reply.outputTokens).toBeLessThanOrEqual(100)
  })

  it("rejects a prompt longer than the model's context window", () => {
    const outcome = Core.respond(simRequest({ model: "gpt-3.5-turbo", prompt: "word ".repeat(20_000) }), 1)
    expect(outcome).toEqual({ _tag: "ContextTooLong", promptTokens: 20_001, contextWindow: 16_385 })
  })
})
