/**
 * The first stage's decisions as plain functions: which model a request gets, and the prompt made for it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Prepare from "../../src/generation/Prepare.js"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import * as PromptBuilder from "../../src/PromptBuilder.js"
import * as TokenCount from "../../src/TokenCount.js"
import { request, sampleProject } from "../utils/fixtures.js"

const catalog = ModelCatalog.defaultCatalog
const both = { catalog, configured: ["openai", "anthropic"] as const }

describe("Prepare.selectModel", () => {
  it("chooses by complexity among the configured providers", () => {
    const simple = Prepare.selectModel(request(), 5_000, both)
    expect(Either.getOrThrow(simple).model.id).toBe("gpt-4.1-mini")
    const onlyAnthropic = Prepare.selectModel(request(), 5_000, { catalog, configured: ["anthropic"] })
    expect(Either.getOrThrow(onlyAnthropic).model.id).toBe("claude-haiku-4-5")
  })

  it("takes a pinned model, from the catalog or as an unknown one with a conservative window", () => {
    const known = Either.getOrThrow(Prepare.selectModel(request({ provider: "openai", model: "gpt-4.1" }), 0, both))
    expect([known.model, known.reasoning]).toEqual([
      ModelCatalog.find(catalog, "openai", "gpt-4.1").pipe((o) => (o._tag === "Some" ? o.value : undefined)),
      "Model pinned by the request"
    ])
    const gateway = Either.getOrThrow(
      Prepare.selectModel(request({ provider: "openai", model: "acme/fine-tune:plot" }), 0, both)
    )
    expect([gateway.model.id, gateway.model.contextWindow, gateway.model.inputPricePerMillion]).toEqual([
      "acme/fine-tune:plot",
      128_000,
      null
    ])
  })

  it("refuses a pinned model without its provider, and a provider that is not configured", () => {
    const noProvider = Prepare.selectModel(request({ model: "gpt-4.1" }), 0, both)
    expect(Either.isLeft(noProvider) && noProvider.left).toMatchObject({
      _tag: "RequestValidationError",
      field: "provider"
    })
    const missing = Prepare.selectModel(request({ provider: "anthropic" }), 0, { catalog, configured: ["openai"] })
    expect(Either.isLeft(missing) && missing.left).toMatchObject({
      _tag: "ProviderNotConfiguredError",
      provider: "anthropic"
    })
  })
})

describe("Prepare.prepare", () => {
  const model = ModelCatalog.find(catalog, "openai", "gpt-4.1-mini").pipe((
    o
  ) => (o._tag === "Some" ? o.value : undefined))!
  const count = TokenCount.openAiCount("gpt-4o")
  const counter: TokenCount.Counter = { remembered: count, once: count }

  it("sends the whole project when it fits, and reserves its whole prompt as input", () => {
    const prepared = Prepare.prepare(request(), sampleProject, model, counter, {
      maxContextTokens: undefined,
      reducedBudget: undefined
    })
    expect(prepared.fitted.context).toBe(sampleProject)
    expect(prepared.inputTokens).toBe(prepared.promptTokens + prepared.fitted.tokens)
    expect(prepared.prompt.maxOutputTokens).toBe(PromptBuilder.maxOutputTokensFor(1_000, model))
    expect(prepared.estimatedCostUsd).toBeGreaterThan(0)
  })

  it("fits the project into a reduced budget, strictly within it", () => {
    const prepared = Prepare.prepare(request(), sampleProject, model, counter, {
      maxContextTokens: undefined,
      reducedBudget: 300
    })
    expect(prepared.fitted.tokens).toBeLessThanOrEqual(300)
    expect(prepared.fitted.warnings[0]).toMatch(/^The project context was cut to fit 300 tokens/)
  })
})
