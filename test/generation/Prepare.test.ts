/**
 * The first stage's decisions as plain functions: which model a request gets, and the prompt made for it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Domain from "../../src/Domain.js"
import * as Prepare from "../../src/generation/Prepare.js"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import * as PromptBuilder from "../../src/PromptBuilder.js"
import * as TokenCount from "../../src/TokenCount.js"
import { agreesWithDecoder, textAround } from "../utils/decoderTwin.js"
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

  it("refuses the other provider's model, and with pinnedModels `catalog` one the catalog lacks", () => {
    // Before, sent to the wrong API, which could only answer that it does not serve it.
    for (const pinnedModels of ["any", "catalog"] as const) {
      const crossed = Prepare.selectModel(request({ provider: "openai", model: "claude-opus-4-1" }), 0, {
        ...both,
        pinnedModels
      })
      expect(Either.isLeft(crossed) && crossed.left).toMatchObject({
        _tag: "RequestValidationError",
        field: "model",
        reason: "claude-opus-4-1 is anthropic's model, not openai's"
      })
    }
    const madeUp = Prepare.selectModel(request({ provider: "anthropic", model: "claude-9" }), 0, {
      ...both,
      pinnedModels: "catalog"
    })
    expect(Either.isLeft(madeUp) && madeUp.left).toMatchObject({
      _tag: "RequestValidationError",
      field: "model",
      reason: expect.stringMatching(/^claude-9 is not one of anthropic's models here \(claude-/)
    })
    const listed = Prepare.selectModel(request({ provider: "anthropic", model: "claude-haiku-4-5" }), 0, {
      ...both,
      pinnedModels: "catalog"
    })
    expect(Either.getOrThrow(listed).model.id).toBe("claude-haiku-4-5")
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

describe("Prepare.decodeRequest", () => {
  const limits = Domain.Limits
  const oneOf = <A>(valid: FastCheck.Arbitrary<A>, ...invalid: ReadonlyArray<unknown>) =>
    FastCheck.oneof({ weight: 10, arbitrary: valid }, { weight: 1, arbitrary: FastCheck.constantFrom(...invalid) })
  const input = FastCheck.record({
    projectId: oneOf(
      FastCheck.stringMatching(/^[a-z0-9][a-z0-9._-]{0,5}$/),
      "",
      "-x",
      "a b",
      "x".repeat(128),
      "x".repeat(129),
      1
    ),
    userPrompt: textAround(limits.promptMaxLength),
    genre: textAround(limits.genreMaxLength),
    targetWordCount: oneOf(
      FastCheck.integer({ min: limits.minWordCount, max: limits.maxWordCount }),
      limits.minWordCount - 1,
      limits.maxWordCount + 1,
      100.5,
      Number.NaN,
      "900"
    ),
    kind: oneOf(FastCheck.constantFrom("outline", "scene_beats", "suggestions"), "novel", null),
    provider: oneOf(FastCheck.constantFrom("openai", "anthropic"), "google", 1),
    model: textAround(limits.modelMaxLength),
    costSensitive: oneOf(FastCheck.boolean(), "yes", 0),
    temperature: oneOf(
      FastCheck.double({ min: limits.minTemperature, max: limits.maxTemperature, noNaN: true }),
      -0.1,
      2.1,
      Number.NaN,
      Number.POSITIVE_INFINITY
    ),
    extra: FastCheck.constant("not a field")
  }, { requiredKeys: [] })
  const agrees = agreesWithDecoder(
    Domain.PlotRequest,
    { onExcessProperty: "error" },
    (value) => Prepare.decodeRequest(value as Domain.PlotRequestInput)
  )

  it("reads any input as the request's schema does: the same request when it accepts it, an error when it does not", () => {
    let accepted = 0
    FastCheck.assert(
      FastCheck.property(
        FastCheck.oneof({ weight: 9, arbitrary: input }, { weight: 1, arbitrary: FastCheck.anything() }),
        (value) => {
          if (agrees(value) !== undefined) accepted++
        }
      ),
      { numRuns: 3_000 }
    )
    // Both sides of the bounds were tried.
    expect(accepted).toBeGreaterThan(100)
  })

  it("reads only the input's own fields, as the schema does: inherited ones, symbols and hidden extras included", () => {
    class Dto {
      projectId = "novel"
      userPrompt = "x"
      get genre() {
        return "noir"
      }
    }
    const hidden = Object.defineProperty({ projectId: "novel", userPrompt: "x" }, "extra", { value: 1 })
    const inputs: ReadonlyArray<unknown> = [
      new Dto(),
      Object.assign(Object.create({ genre: "noir", temperature: 1.5 }), { projectId: "novel", userPrompt: "x" }),
      Object.create({ projectId: "novel", userPrompt: "x" }),
      { projectId: "novel", userPrompt: "x", [Symbol("s")]: 1 },
      hidden
    ]
    for (const value of inputs) agrees(value)
  })
})
