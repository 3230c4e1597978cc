import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { PlotOutline, PlotRequest, ProjectContext } from "../src/Domain.js"
import * as Errors from "../src/Errors.js"

const decodeRequest = (input: unknown) =>
  Either.mapLeft(
    Schema.decodeUnknownEither(PlotRequest)(input, { onExcessProperty: "error" }),
    (e) => Errors.RequestValidationError.fromParseError(e)
  )

const fieldOf = (input: unknown) => {
  const result = decodeRequest(input)
  return Either.isLeft(result) ? result.left.field : undefined
}

const valid = { projectId: "novel-1", userPrompt: "Outline the next chapter" }

describe("PlotRequest", () => {
  it("names an unknown field, however long its name, in at most 200 characters", () => {
    const result = decodeRequest({ ...valid, ["x".repeat(900_000)]: 1 })
    const error = Either.isLeft(result) ? result.left : undefined
    expect(error?.field).toBe(`${"x".repeat(60)}…`)
    expect(error!.message.length).toBeLessThan(600)
  })

  it("says a body that is not an object must be one, in words a client understands", () => {
    const result = decodeRequest([1, 2])
    expect(Either.isLeft(result) && [result.left.field, result.left.reason]).toEqual([
      "input",
      "must be a JSON object with the request's fields"
    ])
  })

  it("names every value a choice allows, and what a project file that is not an object must be", () => {
    for (
      const [input, reason] of [
        [{ ...valid, provider: "google" }, "Expected \"openai\" or \"anthropic\", actual \"google\""],
        [{ ...valid, kind: "poem" }, "Expected \"outline\" or \"scene_beats\" or \"suggestions\", actual \"poem\""]
      ] as const
    ) {
      // Before, only the first: `Expected "openai", actual "google"`, as if that were the one value allowed.
      const result = decodeRequest(input)
      expect(Either.isLeft(result) && result.left.reason).toBe(reason)
    }
    const project = Schema.decodeUnknownEither(ProjectContext)([1])
    expect(Either.isLeft(project) && Errors.RequestValidationError.fromParseError(project.left, "project").reason)
      .toBe("must be a JSON object with the project's fields")
  })

  it("refuses a prompt with nothing visible in it, control characters or zero-width ones", () => {
    for (const userPrompt of ["\u0000\u0000", " \u200b\u200d ", "\u0007"]) {
      // Before, taken as a prompt (it is not empty once trimmed), and a plot was generated for it.
      const result = decodeRequest({ ...valid, userPrompt })
      expect(Either.isLeft(result) && [result.left.field, result.left.reason]).toEqual([
        "userPrompt",
        "must have some visible text"
      ])
    }
    expect(Either.isRight(decodeRequest({ ...valid, userPrompt: "\u0000Why?" }))).toBe(true)
  })

  it("accepts a minimal request and trims the prompt", () => {
    const result = decodeRequest({ ...valid, userPrompt: "  Outline it  " })
    expect(Either.isRight(result) && result.right.userPrompt).toBe("Outline it")
  })

  it.each([
    ["projectId", { ...valid, projectId: "../etc/passwd" }],
    ["projectId", { ...valid, projectId: "" }],
    ["userPrompt", { ...valid, userPrompt: "   " }],
    ["userPrompt", { ...valid, userPrompt: "x".repeat(10_001) }],
    ["targetWordCount", { ...valid, targetWordCount: 10 }],
    ["targetWordCount", { ...valid, targetWordCount: 20_001 }],
    ["targetWordCount", { ...valid, targetWordCount: 500.5 }],
    ["genre", { ...valid, genre: "g".repeat(101) }],
    ["provider", { ...valid, provider: "mistral" }],
    ["kind", { ...valid, kind: "poem" }],
    ["temperature", { ...valid, temperature: 2.5 }],
    ["costSensitive", { ...valid, costSensitive: "yes" }],
    ["surprise", { ...valid, surprise: true }]
  ])("names the bad field %s", (field, input) => {
    expect(fieldOf(input)).toBe(field)
  })
})

describe("ProjectContext", () => {
  it("names the path of a bad nested field", () => {
    const result = Schema.decodeUnknownEither(ProjectContext)({
      characters: [{ name: "Mara" }, { name: "" }],
      plotThreads: [],
      locations: [],
      worldBuilding: [],
      previousContent: []
    })
    expect(Either.isLeft(result) && Errors.RequestValidationError.fromParseError(result.left, "project").field).toBe(
      "project.characters[1].name"
    )
  })

  it("bounds the number of characters", () => {
    const result = Schema.decodeUnknownEither(ProjectContext)({
      characters: Array.from({ length: 1_001 }, (_, i) => ({ name: `C${i}` })),
      plotThreads: [],
      locations: [],
      worldBuilding: [],
      previousContent: []
    })
    expect(Either.isLeft(result) && Errors.RequestValidationError.fromParseError(result.left, "project").field).toBe(
      "project.characters"
    )
  })
})

describe("PlotOutline", () => {
  it("requires at least one act with at least one beat", () => {
    expect(Either.isLeft(Schema.decodeUnknownEither(PlotOutline)({ title: "T", logline: "L", acts: [] }))).toBe(true)
    expect(
      Either.isLeft(
        Schema.decodeUnknownEither(PlotOutline)({
          title: "T",
          logline: "L",
          acts: [{ title: "A", summary: "S", beats: [] }]
        })
      )
    ).toBe(true)
  })
})
