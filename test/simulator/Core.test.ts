import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as JSONSchema from "effect/JSONSchema"
import * as Schema from "effect/Schema"
import { PlotOutline, type PlotRequest } from "../../src/Domain.js"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import * as PromptBuilder from "../../src/PromptBuilder.js"
import * as ResponseParser from "../../src/ResponseParser.js"
import * as AnthropicWire from "../../src/simulator/AnthropicWire.js"
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

describe("Content.kindAskedFor", () => {
  it("reads the kind of the writer's request, an outline when it names none", () => {
    const promptFor = (kind: "outline" | "scene_beats" | "suggestions") => {
      const prompt = PromptBuilder.build(request({ kind }), sampleProject, gpt41)
      return `${prompt.system}\n\n${prompt.user}`
    }
    expect(Content.kindAskedFor(promptFor("scene_beats"))).toBe("scene_beats")
    expect(Content.kindAskedFor(promptFor("suggestions"))).toBe("suggestions")
    expect(Content.kindAskedFor(promptFor("outline"))).toBe("outline")
    expect(Content.kindAskedFor("Tell a story about Mara.")).toBe("outline")
  })
})

describe("Core.respond per kind", () => {
  const places = sampleProject.locations.map((l) => l.name)
  const answer = (fields: Partial<typeof PlotRequest.Encoded>, seed: number) => {
    const plotRequest = request(fields)
    const prompt = PromptBuilder.build(plotRequest, sampleProject, gpt41)
    const reply = Core.respond(
      simRequest({ prompt: `${prompt.system}\n\n${prompt.user}`, maxOutputTokens: prompt.maxOutputTokens }),
      seed
    )
    if (reply._tag !== "Reply") throw new Error(`no reply: ${reply._tag}`)
    const parsed = ResponseParser.parseStructured(reply.object, reply.text, plotRequest, sampleProject)
    if (Either.isLeft(parsed)) throw parsed.left
    return parsed.right
  }

  it("writes an outline as three acts of beats", () => {
    for (let seed = 0; seed < 5; seed++) {
      const { content, outline } = answer({ kind: "outline" }, seed)
      expect(outline.acts).toHaveLength(3)
      expect(content).toContain("## Act 3: ")
    }
  })

  it("writes scene beats as one scene, in one place, of several beats that name who is in them", () => {
    for (let seed = 0; seed < 10; seed++) {
      const { content, outline, warnings } = answer({ kind: "scene_beats" }, seed)
      expect(outline.acts).toHaveLength(1)
      const [scene] = outline.acts
      expect(scene!.beats.length).toBeGreaterThanOrEqual(4)
      expect(new Set(scene!.beats.map((b) => b.location)).size).toBe(1)
      for (const beat of scene!.beats) {
        expect(beat.characters.length).toBeGreaterThan(0)
        for (const name of beat.characters) expect(beat.summary).toContain(name)
      }
      expect(scene!.beats[0]!.summary).toMatch(/arrives|opens|steps into/)
      expect(scene!.beats.at(-2)!.summary).toMatch(/^The turn: /)
      expect(content).toMatch(/\n## Scene: /)
      expect(content).not.toContain("## Act")
      expect(warnings).toEqual([])
    }
  })

  it("sets the scene where the writer asks, with the people the writer names", () => {
    const { outline } = answer({
      kind: "scene_beats",
      userPrompt: "Agnes Bell confronts Pip Arden at the Drowned Bell"
    }, 2)
    expect(outline.acts[0]!.beats.every((b) => b.location === "The Drowned Bell")).toBe(true)
    expect(outline.acts[0]!.summary).toMatch(/^Agnes Bell comes to The Drowned Bell .*Pip Arden/)
    const byFirstNames = answer({ kind: "scene_beats", userPrompt: "Isolde questions Pip at Greyhaven Harbour" }, 2)
    expect(byFirstNames.outline.acts[0]!.summary).toMatch(/^Isolde Varga comes to Greyhaven Harbour .*Pip Arden/)
  })

  it("writes suggestions as three alternatives with distinct titles, each a short arc", () => {
    for (let seed = 0; seed < 10; seed++) {
      const { content, outline } = answer({ kind: "suggestions" }, seed)
      const titles = outline.acts.map((a) => a.title)
      expect(titles.length).toBeGreaterThanOrEqual(3)
      expect(new Set(titles).size).toBe(titles.length)
      for (const option of outline.acts) {
        expect(option.beats.length).toBeGreaterThanOrEqual(2)
        expect(option.beats.length).toBeLessThanOrEqual(4)
        expect(places).toContain(option.beats[0]!.location)
      }
      expect(content).toContain("## Option 1: ")
      expect(content).toContain("## Option 3: ")
      expect(content).not.toContain("## Act")
    }
  })

  it("tracks the target word count for every kind", () => {
    for (const kind of ["outline", "scene_beats", "suggestions"] as const) {
      for (const targetWordCount of [300, 600, 1_500]) {
        const { wordCount } = answer({ kind, targetWordCount }, 1)
        expect(Math.abs(wordCount - targetWordCount)).toBeLessThan(targetWordCount * ResponseParser.wordCountTolerance)
      }
    }
  })

  it("is deterministic for a seed, for every kind", () => {
    for (const kind of ["scene_beats", "suggestions"] as const) {
      expect(answer({ kind }, 4)).toEqual(answer({ kind }, 4))
      expect(answer({ kind }, 4).content).not.toEqual(answer({ kind }, 5).content)
    }
  })
})

describe("Core.declines and refusals", () => {
  it("declines on the prompt's marker, for every dialect or the one it names", () => {
    const marked = (marker: string, dialect: Core.Dialect) =>
      Core.declines(simRequest({ prompt: `x ${marker}`, dialect }))
    expect(marked("[simulate refusal]", "openai")).toBe("refusal")
    expect(marked("[simulate refusal]", "anthropic")).toBe("refusal")
    expect(marked("[simulate refusal: openai]", "anthropic")).toBeUndefined()
    expect(marked("[simulate content-policy]", "openai")).toBe("content-policy")
    // Anthropic has no safety system's 400 for a request: its models decline in the answer.
    expect(marked("[simulate content-policy]", "anthropic")).toBe("refusal")
    expect(Core.declines(simRequest())).toBeUndefined()
  })

  it("a refusal bills what was written before it: Anthropic's third of the answer, OpenAI's refusal", () => {
    const anthropic = Core.respond(
      simRequest({ dialect: "anthropic", model: "claude-sonnet-4-5", prompt: `${promptText} [simulate refusal]` }),
      1
    )
    const openai = Core.respond(simRequest({ prompt: `${promptText} [simulate refusal]` }), 1)
    expect(anthropic).toMatchObject({ _tag: "Reply", stopReason: "refusal", object: undefined })
    expect(openai).toMatchObject({ _tag: "Reply", stopReason: "refusal", text: Core.refusalText })
    if (anthropic._tag !== "Reply" || openai._tag !== "Reply") return
    expect(anthropic.writtenBeforeRefusal!.length).toBeGreaterThan(100)
    expect(anthropic.outputTokens).toBe(Content.countTokens(anthropic.writtenBeforeRefusal!))
    expect(openai.outputTokens).toBe(Content.countTokens(Core.refusalText))
  })

  it("the Anthropic face refuses an assistant prefill with a 400, as current Claude models do", () => {
    const body = {
      model: "claude-sonnet-4-5",
      max_tokens: 100,
      messages: [{ role: "user", content: "Go on." }, { role: "assistant", content: "The bell rang" }]
    }
    expect(AnthropicWire.parseRequest(body)).toMatchObject({ status: 400 })
    expect(AnthropicWire.parseRequest({ ...body, messages: [body.messages[0]] })).toMatchObject({
      dialect: "anthropic"
    })
  })

  it("the Anthropic face refuses a temperature above 1 with a 400, as Anthropic does", () => {
    const body = { model: "claude-sonnet-4-5", max_tokens: 100, messages: [{ role: "user", content: "Go on." }] }
    expect(AnthropicWire.parseRequest({ ...body, temperature: 1.5 })).toMatchObject({ status: 400 })
    expect(AnthropicWire.parseRequest({ ...body, temperature: 1 })).toMatchObject({ dialect: "anthropic" })
  })
})

describe("Core.servesModel", () => {
  it("serves each family on its own provider's API only, and no made-up Claude", () => {
    const outcome = (dialect: Core.Dialect, model: string) => Core.respond(simRequest({ dialect, model }), 1)._tag
    expect(outcome("openai", "gpt-4.1")).not.toBe("ModelNotFound")
    expect(outcome("anthropic", "claude-haiku-4-5")).not.toBe("ModelNotFound")
    expect(outcome("anthropic", "claude-3-haiku-20240307")).not.toBe("ModelNotFound")
    // Before, served: the OpenAI face took any `claude…` id, and a made-up one was served on either.
    expect(outcome("openai", "claude-opus-4-1")).toBe("ModelNotFound")
    expect(outcome("anthropic", "gpt-4.1")).toBe("ModelNotFound")
    expect(outcome("anthropic", "claude-9")).toBe("ModelNotFound")
  })
})
