import * as NodeContext from "@effect/platform-node/NodeContext"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import * as ModelCatalog from "../src/ModelCatalog.js"
import { temporaryDirectory } from "./utils/temporaryDirectory.js"

const find = (catalog: ModelCatalog.Catalog, provider: "openai" | "anthropic", id: string) =>
  Option.getOrUndefined(ModelCatalog.find(catalog, provider, id))

describe("ModelCatalog", () => {
  it("holds current models per tier and the six of 2024, retired", () => {
    for (const provider of ["openai", "anthropic"] as const) {
      for (const tier of ["premium", "balanced", "fast"] as const) {
        expect(Option.isSome(ModelCatalog.forTier(ModelCatalog.defaultCatalog, provider, tier))).toBe(true)
      }
    }
    expect(ModelCatalog.defaultCatalog.filter((m) => m.retired).map((m) => m.id)).toEqual([
      "gpt-4",
      "gpt-4-turbo-preview",
      "gpt-3.5-turbo",
      "claude-3-opus-20240229",
      "claude-3-sonnet-20240229",
      "claude-3-haiku-20240307"
    ])
  })

  it("prices a usage, and an unknown price as unknown", () => {
    const sonnet = find(ModelCatalog.defaultCatalog, "anthropic", "claude-sonnet-4-5")!
    expect(ModelCatalog.cost(sonnet, { inputTokens: 1_000_000, outputTokens: 100_000 })).toBeCloseTo(4.5, 10)
    expect(ModelCatalog.cost(ModelCatalog.unknownModel("openai", "gpt-x"), { inputTokens: 10, outputTokens: 10 }))
      .toBeNull()
  })

  it("merges overrides by provider and id, and adds new models", () => {
    const override = new ModelCatalog.ModelInfo({
      ...find(ModelCatalog.defaultCatalog, "openai", "gpt-4.1")!,
      inputPricePerMillion: 1
    })
    const added = ModelCatalog.unknownModel("openai", "gpt-4.1-nano")
    const merged = ModelCatalog.merge(ModelCatalog.defaultCatalog, [override, added])
    expect(merged).toHaveLength(ModelCatalog.defaultCatalog.length + 1)
    expect(find(merged, "openai", "gpt-4.1")!.inputPricePerMillion).toBe(1)
    expect(find(merged, "openai", "gpt-4.1-nano")).toBeDefined()
  })

  it.effect("loads overrides from a file and from inline JSON, inline last", () => {
    const file = path.join(temporaryDirectory("catalog-"), "models.json")
    writeFileSync(
      file,
      JSON.stringify([
        {
          provider: "openai",
          id: "gpt-4.1",
          tier: "balanced",
          contextWindow: 1_000_000,
          maxOutputTokens: 32_768,
          inputPricePerMillion: 1.5,
          outputPricePerMillion: 6
        },
        {
          provider: "anthropic",
          id: "claude-next",
          tier: "premium",
          contextWindow: 500_000,
          maxOutputTokens: 64_000,
          inputPricePerMillion: null,
          outputPricePerMillion: null
        }
      ])
    )
    const inline = JSON.stringify([
      {
        provider: "openai",
        id: "gpt-4.1",
        tier: "balanced",
        contextWindow: 1_000_000,
        maxOutputTokens: 32_768,
        inputPricePerMillion: 1.75,
        outputPricePerMillion: 7
      }
    ])
    return Effect.gen(function*() {
      const catalog = yield* ModelCatalog.load()
      expect(find(catalog, "openai", "gpt-4.1")!.inputPricePerMillion).toBe(1.75)
      expect(find(catalog, "anthropic", "claude-next")!.inputPricePerMillion).toBeNull()
    }).pipe(
      Effect.withConfigProvider(
        ConfigProvider.fromMap(new Map([["PLOT_ENGINE_MODELS_FILE", file], ["PLOT_ENGINE_MODELS", inline]]))
      ),
      Effect.provide(NodeContext.layer)
    )
  })

  it.effect("names the bad field of an override", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        ModelCatalog.decode(JSON.stringify([{ provider: "openai", id: "x", tier: "huge" }]))
      )
      expect(error.field).toBe("catalog[0].tier")
    }))

  it.effect("names the variable a bad override came from", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        ModelCatalog.load().pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["PLOT_ENGINE_MODELS", "{bad"]]))),
          Effect.provide(NodeContext.layer)
        )
      )
      // Before, "catalog", which named no variable.
      expect(error).toMatchObject({ _tag: "RequestValidationError", field: "PLOT_ENGINE_MODELS" })
    }))
})
