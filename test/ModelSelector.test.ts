import { describe, expect, it } from "@effect/vitest"
import * as Option from "effect/Option"
import * as ModelCatalog from "../src/ModelCatalog.js"
import * as ModelSelector from "../src/ModelSelector.js"

const words = (n: number) => "word ".repeat(n).trim()

describe("ModelSelector.assessComplexity", () => {
  it.each(
    [
      ["a short prompt", { userPrompt: "A twist" }, 0, "low"],
      ["1,001-2,000 words (+1)", { userPrompt: "A twist", targetWordCount: 1_500 }, 1, "low"],
      ["exactly 1,000 words (+0)", { userPrompt: "A twist", targetWordCount: 1_000 }, 0, "low"],
      ["over 2,000 words (+2)", { userPrompt: "A twist", targetWordCount: 2_001 }, 2, "medium"],
      ["exactly 2,000 words (+1)", { userPrompt: "A twist", targetWordCount: 2_000 }, 1, "low"],
      ["a prompt over 200 characters (+1)", { userPrompt: "x".repeat(201) }, 1, "low"],
      ["a prompt of exactly 200 characters (+0)", { userPrompt: "x".repeat(200) }, 0, "low"],
      ["'character development' (+2)", { userPrompt: "Focus on character development" }, 2, "medium"],
      ["'Complex', any case (+2)", { userPrompt: "A Complex heist" }, 2, "medium"],
      ["'nuanced' (+2)", { userPrompt: "A nuanced betrayal" }, 2, "medium"],
      ["'detailed' (+2)", { userPrompt: "A detailed battle" }, 2, "medium"],
      ["a fantasy genre (+1)", { userPrompt: "A twist", genre: "Epic Fantasy" }, 1, "low"],
      ["a sci-fi genre (+1)", { userPrompt: "A twist", genre: "sci-fi" }, 1, "low"],
      ["literary fiction (+1)", { userPrompt: "A twist", genre: "literary fiction" }, 1, "low"],
      ["a thriller genre (+0)", { userPrompt: "A twist", genre: "thriller" }, 0, "low"],
      ["keyword and fantasy (3)", { userPrompt: "A detailed quest", genre: "fantasy" }, 3, "medium"],
      ["keyword and long (4)", { userPrompt: "A detailed quest", targetWordCount: 2_500 }, 4, "high"],
      ["everything (6)", { userPrompt: `A nuanced ${words(60)}`, targetWordCount: 3_000, genre: "sci-fi" }, 6, "high"]
    ] as const
  )("%s", (_, request, score, complexity) => {
    expect(ModelSelector.complexityScore(request)).toBe(score)
    expect(ModelSelector.assessComplexity(request)).toBe(complexity)
  })
})

const select = (criteria: Partial<ModelSelector.ModelSelectionCriteria>, options?: ModelSelector.SelectionOptions) =>
  Option.getOrThrow(
    ModelSelector.selectModel(
      { taskComplexity: "low", targetWordCount: 500, projectContext: 1_000, ...criteria },
      options
    )
  )

describe("ModelSelector.selectModel, by the selection rules", () => {
  it.each(
    [
      [
        "high complexity -> premium Anthropic",
        { taskComplexity: "high", targetWordCount: 3_000, projectContext: 5_000 },
        "anthropic",
        "claude-opus-4-1",
        "High complexity requires best model"
      ],
      [
        "more than 2,000 words -> premium Anthropic",
        { taskComplexity: "low", targetWordCount: 2_001 },
        "anthropic",
        "claude-opus-4-1",
        "High complexity requires best model"
      ],
      [
        "medium, cost sensitive -> balanced Anthropic",
        { taskComplexity: "medium", costSensitive: true },
        "anthropic",
        "claude-sonnet-4-5",
        "Balanced quality/cost"
      ],
      ["medium -> balanced OpenAI", { taskComplexity: "medium" }, "openai", "gpt-4.1", "High quality, good speed"],
      [
        "low -> fast OpenAI",
        { taskComplexity: "low" },
        "openai",
        "gpt-4.1-mini",
        "Fast and cost-effective for simple tasks"
      ],
      [
        "a preference wins, at the tier the task needs",
        { taskComplexity: "low", userPreference: "anthropic" },
        "anthropic",
        "claude-haiku-4-5",
        "User preference"
      ],
      [
        "a preference wins over the high rule",
        { taskComplexity: "high", userPreference: "openai" },
        "openai",
        "gpt-5",
        "User preference"
      ]
    ] as const
  )("%s", (_, criteria, provider, model, reasoning) => {
    expect(select(criteria)).toEqual({ provider, model, reasoning })
  })

  // The original examples, on the models of 2024 they were written for.
  it("selects GPT-3.5 for low complexity tasks (the original example)", () => {
    const result = select({ taskComplexity: "low", targetWordCount: 500, projectContext: 1_000 }, {
      catalog: ModelCatalog.legacyCatalog
    })
    expect(result.model).toContain("gpt-3.5")
  })

  it("selects Claude Opus, not GPT-4, for high complexity: the algorithm wins over the original example test", () => {
    const result = select({ taskComplexity: "high", targetWordCount: 3_000, projectContext: 5_000 }, {
      catalog: ModelCatalog.legacyCatalog
    })
    expect(result).toEqual({
      provider: "anthropic",
      model: "claude-3-opus-20240229",
      reasoning: "High complexity requires best model"
    })
  })

  it("selects the medium models of 2024", () => {
    expect(select({ taskComplexity: "medium" }, { catalog: ModelCatalog.legacyCatalog }).model).toBe(
      "gpt-4-turbo-preview"
    )
    expect(select({ taskComplexity: "medium", costSensitive: true }, { catalog: ModelCatalog.legacyCatalog }).model)
      .toBe(
        "claude-3-sonnet-20240229"
      )
  })
})

describe("ModelSelector.selectModel, within configuration and windows", () => {
  it("chooses only configured providers", () => {
    const result = select({ taskComplexity: "high" }, { providers: ["openai"] })
    expect(result).toEqual({
      provider: "openai",
      model: "gpt-5",
      reasoning: "High complexity requires best model (anthropic is not configured)"
    })
    expect(select({ taskComplexity: "low", userPreference: "anthropic" }, { providers: ["openai"] }).provider).toBe(
      "openai"
    )
  })

  it("chooses the nearest tier that can be called when the rule's has none (deployments serving some models only)", () => {
    const served = ModelCatalog.defaultCatalog.filter((m) => m.id === "gpt-4.1" || m.id === "gpt-5")
    // Low complexity asks for the fast tier; only a balanced and a premium model are served: the balanced one.
    expect(select({ taskComplexity: "low" }, { catalog: served, providers: ["openai"] }).model).toBe("gpt-4.1")
    const premiumOnly = ModelCatalog.defaultCatalog.filter((m) => m.id === "gpt-5")
    expect(select({ taskComplexity: "low" }, { catalog: premiumOnly, providers: ["openai"] }).model).toBe("gpt-5")
  })

  it("has nothing to choose without a configured provider", () => {
    expect(
      ModelSelector.selectModel({ taskComplexity: "low", targetWordCount: 500, projectContext: 0 }, { providers: [] })
    ).toEqual(Option.none())
  })

  it("never chooses a retired model by itself", () => {
    for (const taskComplexity of ["low", "medium", "high"] as const) {
      const result = select({ taskComplexity })
      expect(
        ModelCatalog.find(ModelCatalog.defaultCatalog, result.provider, result.model).pipe(Option.map((m) => m.retired))
      )
        .toEqual(Option.some(false))
    }
  })

  it("moves to a bigger window of the same tier when the context does not fit, and says so", () => {
    const result = select({ taskComplexity: "medium", costSensitive: true, projectContext: 300_000 })
    expect(result.provider).toBe("openai")
    expect(result.model).toBe("gpt-4.1")
    expect(result.reasoning).toBe(
      "Balanced quality/cost; gpt-4.1 instead of claude-sonnet-4-5 for its larger context window (1047576 tokens)"
    )
  })

  it("keeps the chosen model and says the context will be cut when nothing bigger is configured", () => {
    const result = select({ taskComplexity: "medium", costSensitive: true, projectContext: 300_000 }, {
      providers: ["anthropic"]
    })
    expect(result.model).toBe("claude-sonnet-4-5")
    expect(result.reasoning).toContain("will be cut to fit its window")
  })

  it("counts the reply's tokens when judging the fit", () => {
    const fits = select({ taskComplexity: "high", projectContext: 190_000 })
    const tooBig = select({ taskComplexity: "high", projectContext: 190_000 }, { outputTokens: 20_000 })
    expect(fits.model).toBe("claude-opus-4-1")
    expect(tooBig.model).toBe("gpt-5")
  })
})
