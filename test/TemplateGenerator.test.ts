import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { PlotOutline } from "../src/Domain.js"
import * as ResponseParser from "../src/ResponseParser.js"
import * as TemplateGenerator from "../src/TemplateGenerator.js"
import { emptyProject, request, sampleProject } from "./utils/fixtures.js"

describe("TemplateGenerator.generate", () => {
  it("is deterministic", () => {
    const a = TemplateGenerator.generate(request(), sampleProject)
    const b = TemplateGenerator.generate(request(), sampleProject)
    expect(a).toEqual(b)
  })

  it("casts the protagonist and antagonist and uses the project's places and open thread", () => {
    const outline = TemplateGenerator.generate(request({ userPrompt: "The lamp fails again." }), sampleProject)
    const text = ResponseParser.render(outline)
    expect(outline.acts.map((a) => a.title)).toEqual(["Setup", "Confrontation", "Resolution"])
    expect(outline.logline).toContain("Mara Quinn must face Elias Thorne")
    expect(text).toContain("The cracked lens")
    expect(text).toContain("Saltmarsh Light")
  })

  it("builds a valid outline for an empty project", () => {
    const outline = TemplateGenerator.generate(request(), emptyProject)
    expect(Either.isRight(Schema.decodeUnknownEither(PlotOutline)(Schema.encodeSync(PlotOutline)(outline)))).toBe(true)
    expect(outline.logline).toContain("the protagonist")
  })

  it("follows the kind of content asked for", () => {
    expect(TemplateGenerator.generate(request({ kind: "scene_beats" }), sampleProject).acts).toHaveLength(1)
    expect(TemplateGenerator.generate(request({ kind: "suggestions" }), sampleProject).acts).toHaveLength(3)
  })

  it("writes an outline as three acts, whatever the kind's default", () => {
    const outline = TemplateGenerator.generate(request({ kind: "outline" }), sampleProject)
    expect(outline).toEqual(TemplateGenerator.generate(request(), sampleProject))
    expect(outline.acts.map((a) => a.title)).toEqual(["Setup", "Confrontation", "Resolution"])
  })

  it("writes scene beats as one scene in one place, its beats naming the project's people", () => {
    const outline = TemplateGenerator.generate(request({ kind: "scene_beats" }), sampleProject)
    const [scene] = outline.acts
    expect(outline.acts).toHaveLength(1)
    expect(scene!.beats.length).toBeGreaterThanOrEqual(5)
    expect(new Set(scene!.beats.map((b) => b.location))).toEqual(new Set(["Saltmarsh Light"]))
    expect(scene!.summary).toMatch(/Mara Quinn.*Isolde Varga.*Elias Thorne/)
    for (const beat of scene!.beats) {
      expect(beat.characters.length).toBeGreaterThan(0)
      for (const name of beat.characters) expect(beat.summary).toContain(name)
    }
    const content = ResponseParser.fromOutline(outline, request({ kind: "scene_beats" }), sampleProject).content
    expect(content).toContain("## Scene: A reckoning at Saltmarsh Light")
    expect(content).not.toContain("## Act")
  })

  it("sets a scene where the request says, when it names one of the project's places", () => {
    const outline = TemplateGenerator.generate(
      request({ kind: "scene_beats", userPrompt: "What happens at the Drowned Bell?" }),
      sampleProject
    )
    expect(outline.acts[0]!.beats.every((b) => b.location === "The Drowned Bell")).toBe(true)
  })

  it("writes suggestions as at least three alternatives with distinct titles, each a short arc", () => {
    const outline = TemplateGenerator.generate(request({ kind: "suggestions" }), sampleProject)
    const titles = outline.acts.map((a) => a.title)
    expect(titles.length).toBeGreaterThanOrEqual(3)
    expect(new Set(titles).size).toBe(titles.length)
    for (const option of outline.acts) expect(option.beats.length).toBeGreaterThanOrEqual(2)
    const content = ResponseParser.fromOutline(outline, request({ kind: "suggestions" }), sampleProject).content
    expect(content).toContain("## Option 1: Raise the stakes")
    expect(content).toContain("## Option 3: An unexpected alliance")
    expect(content).not.toContain("## Act")
  })

  it("builds every kind for an empty project, with sentences that start with a capital", () => {
    for (const kind of ["outline", "scene_beats", "suggestions"] as const) {
      const outline = TemplateGenerator.generate(request({ kind }), emptyProject)
      expect(Either.isRight(Schema.decodeUnknownEither(PlotOutline)(Schema.encodeSync(PlotOutline)(outline)))).toBe(
        true
      )
      for (const act of outline.acts) {
        for (const text of [act.summary, ...act.beats.map((b) => b.summary)]) expect(text).toMatch(/^[A-Z"]/)
      }
    }
  })

  it("takes no question or bare instruction for a premise", () => {
    for (const userPrompt of ["What happens next?", "Outline the next three chapters"]) {
      const outline = TemplateGenerator.generate(request({ userPrompt }), sampleProject)
      expect(outline.logline).toBe(
        "When an old debt comes due, Mara Quinn must face Elias Thorne to resolve \"The cracked lens\"."
      )
    }
    expect(
      TemplateGenerator.generate(
        request({ userPrompt: "Outline the next chapters: the lamp fails again." }),
        sampleProject
      ).logline
    )
      .toContain("When the lamp fails again,")
  })
})
