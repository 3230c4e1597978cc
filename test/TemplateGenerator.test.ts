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
})
