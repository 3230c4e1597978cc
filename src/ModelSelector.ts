/**
 * Choosing the model for a request: score the task's complexity (word count, prompt length, keywords, genre),
 * then apply the selection rules to capability tiers of the catalog rather than to model names, so that the
 * rules outlive the models. High complexity goes to premium Anthropic (Claude Opus), not to OpenAI's premium
 * model.
 *
 * @since 0.1.0
 */
import * as Arr from "effect/Array"
import * as Option from "effect/Option"
import type * as Domain from "./Domain.js"
import * as ModelCatalog from "./ModelCatalog.js"

/**
 * @since 0.1.0
 * @category Complexity
 */
export type Complexity = "low" | "medium" | "high"

/**
 * Scores a request: words over 2,000 (+2) or over 1,000 (+1); a prompt over 200 characters
 * (+1); "character development", "complex", "nuanced" or "detailed" in the prompt (+2); a fantasy, sci-fi or
 * literary fiction genre (+1). 4 or more is high, 2 or more medium, else low.
 *
 * @since 0.1.0
 * @category Complexity
 */
export const complexityScore = (
  request: Pick<Domain.PlotRequest, "targetWordCount" | "userPrompt" | "genre">
): number => {
  let score = 0
  if (request.targetWordCount !== undefined && request.targetWordCount > 2_000) score += 2
  else if (request.targetWordCount !== undefined && request.targetWordCount > 1_000) score += 1
  if (request.userPrompt.length > 200) score += 1
  if (/character development|complex|nuanced|detailed/i.test(request.userPrompt)) score += 2
  if (request.genre !== undefined && /fantasy|sci-fi|literary fiction/i.test(request.genre)) score += 1
  return score
}

/**
 * A request's complexity: its score (`complexityScore`) of 4 or more is high, 2 or more medium, else low.
 *
 * @since 0.1.0
 * @category Complexity
 */
export const assessComplexity = (
  request: Pick<Domain.PlotRequest, "targetWordCount" | "userPrompt" | "genre">
): Complexity => {
  const score = complexityScore(request)
  return score >= 4 ? "high" : score >= 2 ? "medium" : "low"
}

/**
 * What a model is chosen by; `projectContext` is the project context's size in tokens.
 *
 * @since 0.1.0
 * @category Selection
 */
export interface ModelSelectionCriteria {
  readonly taskComplexity: Complexity
  readonly targetWordCount: number
  readonly projectContext: number
  readonly userPreference?: Domain.ProviderName | undefined
  readonly costSensitive?: boolean | undefined
}

/**
 * @since 0.1.0
 * @category Selection
 */
export interface SelectionOptions {
  /** The models to choose from (default `ModelCatalog.defaultCatalog`). */
  readonly catalog?: ModelCatalog.Catalog | undefined
  /** The providers that can be called (default both). */
  readonly providers?: ReadonlyArray<Domain.ProviderName> | undefined
  /** Tokens to keep free for the reply when judging whether the context fits (default 0). */
  readonly outputTokens?: number | undefined
}

/**
 * What was chosen, and why.
 *
 * @since 0.1.0
 * @category Selection
 */
export interface ModelSelection {
  readonly provider: Domain.ProviderName
  readonly model: string
  readonly reasoning: string
}

/** The rule: which provider and tier a request calls for, before configuration and fit. */
const rule = (
  criteria: ModelSelectionCriteria
): { provider: Domain.ProviderName; tier: ModelCatalog.Tier; reasoning: string } => {
  if (criteria.taskComplexity === "high" || criteria.targetWordCount > 2_000) {
    return { provider: "anthropic", tier: "premium", reasoning: "High complexity requires best model" }
  }
  if (criteria.taskComplexity === "medium") {
    return criteria.costSensitive
      ? { provider: "anthropic", tier: "balanced", reasoning: "Balanced quality/cost" }
      : { provider: "openai", tier: "balanced", reasoning: "High quality, good speed" }
  }
  return { provider: "openai", tier: "fast", reasoning: "Fast and cost-effective for simple tasks" }
}

const otherProvider = (
  provider: Domain.ProviderName
): Domain.ProviderName => (provider === "openai" ? "anthropic" : "openai")

/**
 * Chooses a model by the rules, on tiers: the user's preferred provider wins (at the tier the
 * task calls for); high complexity or more than 2,000 words goes to premium Anthropic; medium to balanced
 * Anthropic when cost sensitive, else balanced OpenAI; low to fast OpenAI. Only configured providers are chosen:
 * when the rule's provider is not, the other provider's model of the same tier is. When the context does not
 * fit the chosen model's window, a bigger-window model of the same tier is chosen, and `reasoning` says so.
 * `None` when no configured provider has a model of the tier.
 *
 * @since 0.1.0
 * @category Selection
 */
export const selectModel = (
  criteria: ModelSelectionCriteria,
  options: SelectionOptions = {}
): Option.Option<ModelSelection> => {
  const catalog = options.catalog ?? ModelCatalog.defaultCatalog
  const providers = options.providers ?? ["openai", "anthropic"]
  const base = rule(criteria)
  const preferred = criteria.userPreference !== undefined && providers.includes(criteria.userPreference)
    ? { provider: criteria.userPreference, note: "User preference" }
    : providers.includes(base.provider)
    ? { provider: base.provider, note: base.reasoning }
    : { provider: otherProvider(base.provider), note: `${base.reasoning} (${base.provider} is not configured)` }
  const available = catalog.filter((m) => !m.retired && providers.includes(m.provider))
  // The rule's tier; when no model of it can be called (a deployments file that serves others), the nearest tier
  // that has one, the more capable first.
  const candidates = nearestTier(available, base.tier)
  const first = Arr.findFirst(candidates, (m) => m.provider === preferred.provider).pipe(
    Option.orElse(() => Arr.head(candidates))
  )
  const needed = criteria.projectContext + (options.outputTokens ?? 0)
  return Option.map(first, (chosen) => {
    if (chosen.contextWindow >= needed) {
      return { provider: chosen.provider, model: chosen.id, reasoning: preferred.note }
    }
    const bigger = candidates
      .filter((m) => m.contextWindow > chosen.contextWindow)
      .sort((a, b) => a.contextWindow - b.contextWindow)
    const fits = bigger.find((m) => m.contextWindow >= needed) ?? bigger.at(-1)
    return fits === undefined
      ? {
        provider: chosen.provider,
        model: chosen.id,
        reasoning: `${preferred.note}; the context (${criteria.projectContext} tokens) will be cut to fit its window`
      }
      : {
        provider: fits.provider,
        model: fits.id,
        reasoning:
          `${preferred.note}; ${fits.id} instead of ${chosen.id} for its larger context window (${fits.contextWindow} tokens)`
      }
  })
}

const tierOrder: ReadonlyArray<ModelCatalog.Tier> = ["fast", "balanced", "premium"]

/** The models of `tier`, else of the nearest tier that has some (the more capable of two as near). */
const nearestTier = (
  models: ReadonlyArray<ModelCatalog.ModelInfo>,
  tier: ModelCatalog.Tier
): ReadonlyArray<ModelCatalog.ModelInfo> => {
  const at = tierOrder.indexOf(tier)
  for (let distance = 0; distance < tierOrder.length; distance++) {
    for (const index of [at + distance, at - distance]) {
      const found = models.filter((m) => m.tier === tierOrder[index])
      if (found.length > 0) return found
    }
  }
  return []
}

/**
 * The fallback chain for a chosen model (downgrading, then the other provider): the model itself, then the cheaper
 * current models of the same provider, most capable first, then the other provider's model of the same tier
 * when that provider is configured.
 *
 * @since 0.1.0
 * @category Selection
 */
export const fallbackChain = (
  chosen: ModelCatalog.ModelInfo,
  options: Pick<SelectionOptions, "catalog" | "providers"> = {}
): Arr.NonEmptyArray<ModelCatalog.ModelInfo> => {
  const catalog = options.catalog ?? ModelCatalog.defaultCatalog
  const providers = options.providers ?? ["openai", "anthropic"]
  const priceOf = (m: ModelCatalog.ModelInfo) =>
    (m.inputPricePerMillion ?? Infinity) + (m.outputPricePerMillion ?? Infinity)
  const cheaper = catalog
    .filter((m) => m.provider === chosen.provider && m.id !== chosen.id && !m.retired && priceOf(m) < priceOf(chosen))
    .sort((a, b) => priceOf(b) - priceOf(a))
  const other = providers.includes(otherProvider(chosen.provider))
    ? Option.toArray(ModelCatalog.forTier(catalog, otherProvider(chosen.provider), chosen.tier))
    : []
  return [chosen, ...cheaper, ...other]
}
