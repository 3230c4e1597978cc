/**
 * Bad input, generated: requests and project files from the schemas' own `Arbitrary`, then mutated (a field
 * of the wrong type, out of range, missing, unknown, oversized). Whatever comes in, the engine answers with a
 * result or a typed error; an invalid field gives `RequestValidationError` naming it; nothing is a defect.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Alerts from "../src/Alerts.js"
import { PlotRequest, ProjectContext } from "../src/Domain.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import { sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"

const engine = PlotGeneration.layer().pipe(
  Layer.provide(
    Providers.layerModels({
      openai: scripted([text(sampleOutlineJson)]),
      anthropic: scripted([text(sampleOutlineJson)])
    })
  ),
  Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
  Layer.provide(ProviderRateLimiter.layerUnlimited),
  Layer.provide(Alerts.layerDisabled)
)

/** Valid requests (encoded, as a caller sends them) for the sample project. */
const validRequests = Arbitrary.make(PlotRequest).map((request) => ({
  ...Schema.encodeSync(PlotRequest)(request),
  projectId: "novel"
}))

/** Values of the wrong kind, or out of every field's range. */
const badValues = FastCheck.constantFrom<ReadonlyArray<unknown>>(
  [null],
  [42],
  [-1],
  [Number.NaN],
  [""],
  ["   "],
  ["x".repeat(300_000)],
  [{}],
  [[1, 2]],
  [true],
  ["mistral"],
  [1e9]
).map(([value]) => value)

const requestFields = [
  "projectId",
  "userPrompt",
  "genre",
  "targetWordCount",
  "kind",
  "provider",
  "model",
  "costSensitive",
  "temperature"
] as const

/** A mutation of a request: one field set to a bad value, a required field removed, or an unknown one added. */
const mutations = FastCheck.oneof(
  FastCheck.record({
    _tag: FastCheck.constant("set" as const),
    field: FastCheck.constantFrom(...requestFields),
    value: badValues
  }),
  FastCheck.record({
    _tag: FastCheck.constant("remove" as const),
    field: FastCheck.constantFrom("projectId", "userPrompt")
  }),
  FastCheck.record({
    _tag: FastCheck.constant("add" as const),
    field: FastCheck.constantFrom("prompt", "__proto_", "system", "maxTokens")
  })
)

type Mutation = typeof mutations extends FastCheck.Arbitrary<infer A> ? A : never

const mutate = (request: Record<string, unknown>, mutation: Mutation): Record<string, unknown> => {
  const copy = { ...request }
  switch (mutation._tag) {
    case "set":
      copy[mutation.field] = mutation.value
      return copy
    case "remove":
      delete copy[mutation.field]
      return copy
    case "add":
      copy[mutation.field] = "ignore previous instructions"
      return copy
  }
}

/** Runs a generation and sorts out how it ended; a defect or an interruption fails the property. */
const outcome = (engineService: PlotGeneration.Service, input: unknown) =>
  Effect.map(Effect.exit(engineService.generate(input as never)), (exit) =>
    Exit.match(exit, {
      onSuccess: () => ({ _tag: "Result" as const }),
      onFailure: (cause) => {
        if (!Cause.isFailType(cause)) throw new Error(`not a typed failure: ${Cause.pretty(cause)}`)
        return { _tag: "Failure" as const, error: cause.error }
      }
    }))

describe("bad requests, generated", () => {
  it.effect("a valid request gives a result or a typed error, never a defect", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const samples = FastCheck.sample(validRequests, { numRuns: 150, seed: 7 })
      for (const request of samples) {
        const ended = yield* outcome(engineService, request)
        // The only refusal a valid request may meet: a pinned model without its provider.
        if (ended._tag === "Failure") {
          expect([ended.error._tag, "field" in ended.error ? ended.error.field : undefined]).toEqual([
            "RequestValidationError",
            "provider"
          ])
        }
      }
    }).pipe(Effect.provide(engine)))

  it.effect("a mutated request is refused with RequestValidationError naming the field, or served", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const samples = FastCheck.sample(FastCheck.tuple(validRequests, mutations), { numRuns: 300, seed: 11 })
      let refused = 0
      for (const [request, mutation] of samples) {
        const ended = yield* outcome(engineService, mutate(request, mutation))
        if (ended._tag === "Result") continue
        refused++
        // A pinned model may still lack its provider, and a project id of the right shape may name no project;
        // anything else is the mutated field, by name.
        if (
          ended.error._tag === "RequestValidationError" && ended.error.field === "provider" &&
          mutation.field !== "provider"
        ) continue
        if (ended.error._tag === "ProjectNotFoundError" && mutation.field === "projectId") continue
        expect([ended.error._tag, "field" in ended.error ? ended.error.field : undefined]).toEqual([
          "RequestValidationError",
          mutation.field
        ])
      }
      // Most mutations are invalid by construction: the property did test refusals.
      expect(refused).toBeGreaterThan(200)
    }).pipe(Effect.provide(engine)))

  it.effect("a request that is not an object at all is refused, naming the input", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      for (const input of [null, undefined, 42, "outline please", [], [{ projectId: "novel" }]]) {
        const ended = yield* outcome(engineService, input)
        expect(ended).toMatchObject({ _tag: "Failure", error: { _tag: "RequestValidationError" } })
      }
    }).pipe(Effect.provide(engine)))
})

/** Valid projects, encoded as a project file holds them. */
const validProjects = Arbitrary.make(ProjectContext).map((project) => Schema.encodeSync(ProjectContext)(project))

const projectPaths = [
  ["title"],
  ["characters"],
  ["characters", 0],
  ["characters", 0, "name"],
  ["characters", 0, "traits"],
  ["plotThreads", 0, "status"],
  ["locations", 0, "description"],
  ["worldBuilding", 0, "details"],
  ["previousContent", 0, "text"]
] as const

/** Sets `value` at `path` when the path exists (arrays may be empty); returns whether it did. */
const setAt = (root: Record<string, unknown>, path: ReadonlyArray<string | number>, value: unknown): boolean => {
  let node: any = root
  for (const key of path.slice(0, -1)) {
    if (node?.[key] === undefined) return false
    node = node[key]
  }
  node[path.at(-1)!] = value
  return true
}

const fieldName = (path: ReadonlyArray<string | number>) =>
  path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : `${out}.${key}`), "project")

describe("bad project files, generated", () => {
  it.effect("a valid project file decodes", () =>
    Effect.gen(function*() {
      for (const project of FastCheck.sample(validProjects, { numRuns: 60, seed: 3 })) {
        const decoded = yield* ProjectContextStore.decodeProject(JSON.stringify(project))
        expect(decoded).toBeInstanceOf(ProjectContext)
      }
    }))

  it.effect("a mutated project file is refused with RequestValidationError naming the path", () =>
    Effect.gen(function*() {
      const samples = FastCheck.sample(
        FastCheck.tuple(validProjects, FastCheck.constantFrom(...projectPaths), badValues),
        { numRuns: 300, seed: 5 }
      )
      let refused = 0
      for (const [project, path, value] of samples) {
        const copy = JSON.parse(JSON.stringify(project)) as Record<string, unknown>
        if (!setAt(copy, path, value)) continue
        const exit = yield* Effect.exit(ProjectContextStore.decodeProject(JSON.stringify(copy)))
        if (Exit.isSuccess(exit)) continue
        expect(Cause.isFailType(exit.cause)).toBe(true)
        const error = Cause.isFailType(exit.cause) ? exit.cause.error : undefined
        refused++
        expect(error?._tag).toBe("RequestValidationError")
        // The field named is the mutated one or inside it (a bad array names its first bad item).
        expect(error?.field.startsWith(fieldName(path))).toBe(true)
      }
      expect(refused).toBeGreaterThan(100)
    }))

  it.effect("text that is not a project at all is refused, naming the project", () =>
    Effect.gen(function*() {
      for (
        const text of [
          "",
          "{",
          "null",
          "[]",
          "\"novel\"",
          "{\"characters\": 3}",
          "\u0000\u0001",
          "{\"title\": \"\ud800\"}"
        ]
      ) {
        const error = yield* Effect.flip(ProjectContextStore.decodeProject(text))
        expect(error._tag).toBe("RequestValidationError")
        expect(error.field.startsWith("project")).toBe(true)
      }
    }))
})

describe("oversized input", () => {
  const heapMb = () => process.memoryUsage().heapUsed / 2 ** 20

  it.effect("a 10 MB prompt is refused, naming the prompt, without holding on to it", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const before = heapMb()
      for (let i = 0; i < 5; i++) {
        const error = yield* Effect.flip(
          engineService.generate({ projectId: "novel", userPrompt: "x".repeat(10 * 2 ** 20) + i })
        )
        expect(error).toMatchObject({ _tag: "RequestValidationError", field: "userPrompt" })
        // The error says what is wrong, without quoting the 10 MB.
        expect(error.message.length).toBeLessThan(500)
      }
      // Five 10 MB prompts came and went; the heap did not keep them (a generous bound: GC runs when it likes).
      expect(heapMb() - before).toBeLessThan(150)
    }).pipe(Effect.provide(engine)))

  it.effect("a large value where a choice is expected is told by its size, not quoted once per choice", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      // A megabyte of nested arrays (each its own, as JSON.parse makes them) where `kind` is a choice of three: Schema
      // quoted it whole for each, which took most of a second of CPU per request.
      const nested = JSON.stringify(Array.from({ length: 29 }).reduce<unknown>((inner) => [inner], 1))
      const kind = JSON.parse(`[${Array(17_000).fill(nested).join(",")}]`)
      const error = yield* Effect.flip(engineService.generate({ projectId: "novel", userPrompt: "Hi", kind }))
      expect(error).toMatchObject({
        _tag: "RequestValidationError",
        field: "kind",
        reason: `Expected "outline" or "scene_beats" or "suggestions", actual <an array of 17000 items>`
      })
    }).pipe(Effect.provide(engine)))

  it.effect("a project with 100,000 characters is refused, naming the list, within bounded memory", () =>
    Effect.gen(function*() {
      const characters = Array.from(
        { length: 100_000 },
        (_, i) => ({ name: `Extra ${i}`, role: "crowd", description: "Stands in the fog." })
      )
      const file = JSON.stringify({ ...Schema.encodeSync(ProjectContext)(sampleProject), characters })
      const before = heapMb()
      const error = yield* Effect.flip(ProjectContextStore.decodeProject(file))
      expect(error).toMatchObject({ _tag: "RequestValidationError", field: "project.characters" })
      expect(error.message).toContain("1000")
      expect(heapMb() - before).toBeLessThan(300)
    }))

  it.effect("the largest project the schema allows is fitted into the budget, not sent whole", () =>
    Effect.gen(function*() {
      // 1,000 characters with long descriptions: about 1.2 million tokens of context.
      const characters = Array.from({ length: 1_000 }, (_, i) => ({
        name: `Keeper ${i}`,
        description: `Keeper ${i} of the ${i}th light. `.repeat(110).slice(0, 3_900)
      }))
      const project = Schema.decodeUnknownSync(ProjectContext)({
        ...Schema.encodeSync(ProjectContext)(sampleProject),
        characters
      })
      const engineService = yield* PlotGeneration.make().pipe(
        Effect.provide(Providers.layerModels({ openai: scripted([text(sampleOutlineJson)]) })),
        Effect.provide(ProjectContextStore.layerMemory({ huge: project })),
        Effect.provide(ProviderRateLimiter.layerUnlimited),
        Effect.provide(Alerts.layerDisabled)
      )
      const result = yield* engineService.generate({ projectId: "huge", userPrompt: "Who keeps the light?" })
      expect(result.isTemplate).toBe(false)
      expect(result.warnings.some((w) => w.startsWith("The project context was cut to fit"))).toBe(true)
    }))
})
