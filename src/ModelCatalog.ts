/**
 * Models as data: which provider serves them, how capable they are (tier), how much they read and write,
 * and what they cost. Selection, context budgets and cost estimates all read this table.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Arr from "effect/Array"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Domain from "./Domain.js"
import * as Errors from "./Errors.js"

/**
 * Capability tiers, three per provider: best quality, balance, speed.
 *
 * @since 0.1.0
 * @category Models
 */
export const Tier = Schema.Literal("premium", "balanced", "fast")

/**
 * @since 0.1.0
 * @category Models
 */
export type Tier = typeof Tier.Type

/**
 * One model. Prices are USD per million tokens; `null` means unknown (the cost is then unknown, never 0).
 * `retired` models are never chosen automatically but can still be pinned by id.
 *
 * @since 0.1.0
 * @category Models
 */
export class ModelInfo extends Schema.Class<ModelInfo>("plot-engine/ModelInfo")({
  provider: Domain.ProviderName,
  id: Schema.String.pipe(Schema.nonEmptyString()),
  tier: Tier,
  contextWindow: Schema.Int.pipe(Schema.positive()),
  maxOutputTokens: Schema.Int.pipe(Schema.positive()),
  inputPricePerMillion: Schema.NullOr(Schema.NonNegative),
  outputPricePerMillion: Schema.NullOr(Schema.NonNegative),
  /** Input read from the provider's prompt cache (default: the input price, no discount assumed). */
  cachedInputPricePerMillion: Schema.optional(Schema.NullOr(Schema.NonNegative)),
  /** Input written to the prompt cache (Anthropic: 1.25x the input price for five minutes; default the input price). */
  cacheWritePricePerMillion: Schema.optional(Schema.NullOr(Schema.NonNegative)),
  /** Reasoning models (gpt-5, o-series) reject a `temperature`. */
  acceptsTemperature: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  /**
   * The reasoning efforts a reasoning model accepts (`reasoning.effort`), lowest first; empty for a model that does
   * not reason. A reasoning model spends hidden tokens out of its output limit before it writes.
   */
  reasoningEfforts: Schema.optionalWith(Schema.Array(Domain.ReasoningEffort), { default: () => [] }),
  /** Whether the model can think before it answers when asked (Claude's extended thinking); the engine does not ask. */
  extendedThinking: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  retired: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {}

/**
 * @since 0.1.0
 * @category Models
 */
export type Catalog = ReadonlyArray<ModelInfo>

const model = (fields: typeof ModelInfo.Encoded): ModelInfo => Schema.decodeSync(ModelInfo)(fields)

/**
 * The default catalog. Current models use the providers' public list prices as of 2025-11-01. The six models
 * of 2024 (GPT-4, GPT-4 Turbo, GPT-3.5 Turbo and Claude 3 Opus, Sonnet and Haiku) keep their historical prices
 * and a 128K window for GPT-4, marked retired so that they are only used when pinned.
 *
 * @since 0.1.0
 * @category Catalog
 */
export const defaultCatalog: Catalog = [
  // Anthropic, current
  model({
    provider: "anthropic",
    id: "claude-opus-4-1",
    tier: "premium",
    contextWindow: 200_000,
    maxOutputTokens: 32_000,
    inputPricePerMillion: 15,
    outputPricePerMillion: 75,
    cachedInputPricePerMillion: 1.5,
    cacheWritePricePerMillion: 18.75,
    extendedThinking: true
  }),
  model({
    provider: "anthropic",
    id: "claude-sonnet-4-5",
    tier: "balanced",
    contextWindow: 200_000,
    maxOutputTokens: 64_000,
    inputPricePerMillion: 3,
    outputPricePerMillion: 15,
    cachedInputPricePerMillion: 0.3,
    cacheWritePricePerMillion: 3.75,
    extendedThinking: true
  }),
  model({
    provider: "anthropic",
    id: "claude-haiku-4-5",
    tier: "fast",
    contextWindow: 200_000,
    maxOutputTokens: 64_000,
    inputPricePerMillion: 1,
    outputPricePerMillion: 5,
    cachedInputPricePerMillion: 0.1,
    cacheWritePricePerMillion: 1.25,
    extendedThinking: true
  }),
  // OpenAI, current
  model({
    provider: "openai",
    id: "gpt-5",
    tier: "premium",
    contextWindow: 400_000,
    maxOutputTokens: 128_000,
    inputPricePerMillion: 1.25,
    outputPricePerMillion: 10,
    cachedInputPricePerMillion: 0.125,
    acceptsTemperature: false,
    reasoningEfforts: ["minimal", "low", "medium", "high"]
  }),
  model({
    provider: "openai",
    id: "gpt-4.1",
    tier: "balanced",
    contextWindow: 1_047_576,
    maxOutputTokens: 32_768,
    inputPricePerMillion: 2,
    outputPricePerMillion: 8,
    cachedInputPricePerMillion: 0.5
  }),
  model({
    provider: "openai",
    id: "gpt-4.1-mini",
    tier: "fast",
    contextWindow: 1_047_576,
    maxOutputTokens: 32_768,
    inputPricePerMillion: 0.4,
    outputPricePerMillion: 1.6,
    cachedInputPricePerMillion: 0.1
  }),
  // The models of 2024 (retired by the providers)
  model({
    provider: "openai",
    id: "gpt-4",
    tier: "premium",
    contextWindow: 8_192,
    maxOutputTokens: 4_096,
    inputPricePerMillion: 30,
    outputPricePerMillion: 60,
    retired: true
  }),
  model({
    provider: "openai",
    id: "gpt-4-turbo-preview",
    tier: "balanced",
    contextWindow: 128_000,
    maxOutputTokens: 4_096,
    inputPricePerMillion: 10,
    outputPricePerMillion: 30,
    retired: true
  }),
  model({
    provider: "openai",
    id: "gpt-3.5-turbo",
    tier: "fast",
    contextWindow: 16_385,
    maxOutputTokens: 4_096,
    inputPricePerMillion: 0.5,
    outputPricePerMillion: 1.5,
    retired: true
  }),
  model({
    provider: "anthropic",
    id: "claude-3-opus-20240229",
    tier: "premium",
    contextWindow: 200_000,
    maxOutputTokens: 4_096,
    inputPricePerMillion: 15,
    outputPricePerMillion: 75,
    retired: true
  }),
  model({
    provider: "anthropic",
    id: "claude-3-sonnet-20240229",
    tier: "balanced",
    contextWindow: 200_000,
    maxOutputTokens: 4_096,
    inputPricePerMillion: 3,
    outputPricePerMillion: 15,
    retired: true
  }),
  model({
    provider: "anthropic",
    id: "claude-3-haiku-20240307",
    tier: "fast",
    contextWindow: 200_000,
    maxOutputTokens: 4_096,
    inputPricePerMillion: 0.25,
    outputPricePerMillion: 1.25,
    retired: true
  })
]

/**
 * The six models of 2024, not retired: for hosts that still choose among them, and for checking the selection
 * rules on the model names they were first written for.
 *
 * @since 0.1.0
 * @category Catalog
 */
export const legacyCatalog: Catalog = defaultCatalog
  .filter((m) => m.retired)
  .map((m) => new ModelInfo({ ...m, retired: false }))

/**
 * Looks a model up by provider and id.
 *
 * @since 0.1.0
 * @category Catalog
 */
export const find = (catalog: Catalog, provider: Domain.ProviderName, id: string): Option.Option<ModelInfo> =>
  Arr.findFirst(catalog, (m) => m.provider === provider && m.id === id)

/**
 * The current (not retired) model of a provider at a tier.
 *
 * @since 0.1.0
 * @category Catalog
 */
export const forTier = (catalog: Catalog, provider: Domain.ProviderName, tier: Tier): Option.Option<ModelInfo> =>
  Arr.findFirst(catalog, (m) => m.provider === provider && m.tier === tier && !m.retired)

/**
 * What a model is assumed to be when it is pinned but not in the catalog: unknown price, a conservative
 * window, so that budgets stay safe.
 *
 * @since 0.1.0
 * @category Catalog
 */
export const unknownModel = (provider: Domain.ProviderName, id: string): ModelInfo =>
  model({
    provider,
    id,
    tier: "balanced",
    contextWindow: 128_000,
    maxOutputTokens: 4_096,
    inputPricePerMillion: null,
    outputPricePerMillion: null
  })

/**
 * What a call cost in USD, as the provider bills it: input not cached at the input price, input read from the
 * prompt cache and input written to it at their prices (the input price when the catalog has none), output
 * (reasoning included) at the output price; `null` when a price it needs is unknown.
 *
 * @since 0.1.0
 * @category Cost
 */
export const cost = (
  info: ModelInfo,
  usage: Pick<Domain.Usage, "inputTokens" | "outputTokens" | "cachedInputTokens" | "cacheWriteTokens">
): number | null => {
  const cached = usage.cachedInputTokens ?? 0
  const written = usage.cacheWriteTokens ?? 0
  const cachedPrice = cached === 0 ? 0 : info.cachedInputPricePerMillion === undefined
    ? info.inputPricePerMillion
    : info.cachedInputPricePerMillion
  const writePrice = written === 0 ? 0 : info.cacheWritePricePerMillion === undefined
    ? info.inputPricePerMillion
    : info.cacheWritePricePerMillion
  if (
    info.inputPricePerMillion === null || info.outputPricePerMillion === null || cachedPrice === null ||
    writePrice === null
  ) return null
  const uncached = Math.max(0, usage.inputTokens - cached - written)
  return (uncached * info.inputPricePerMillion + cached * cachedPrice + written * writePrice +
    usage.outputTokens * info.outputPricePerMillion) / 1_000_000
}

// =============================================================================
// Overrides
// =============================================================================

/**
 * Replaces models of the base catalog by `(provider, id)` with the overrides, and adds the new ones.
 *
 * @since 0.1.0
 * @category Overrides
 */
export const merge = (base: Catalog, overrides: Catalog): Catalog => [
  ...base.map((m) => overrides.find((o) => o.provider === m.provider && o.id === m.id) ?? m),
  ...overrides.filter((o) => !base.some((m) => m.provider === o.provider && m.id === o.id))
]

/**
 * Decodes a catalog from JSON text (an array of models); a bad field is named from `source`, as
 * `catalog[2].contextWindow` (or `PLOT_ENGINE_MODELS[2].contextWindow` for the variable it came from).
 *
 * @since 0.1.0
 * @category Overrides
 */
export const decode = (text: string, source = "catalog"): Effect.Effect<Catalog, Errors.RequestValidationError> =>
  Schema.decodeUnknown(Schema.parseJson(Schema.Array(ModelInfo)))(text, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => Errors.RequestValidationError.fromParseError(error, source))
  )

/**
 * The catalog in effect: the default catalog with the models of `PLOT_ENGINE_MODELS_FILE` (a JSON file) and
 * then of `PLOT_ENGINE_MODELS` (inline JSON) merged over it, each optional.
 *
 * @since 0.1.0
 * @category Overrides
 */
export const load = Effect.fn("ModelCatalog.load")(function*() {
  const file = yield* Config.option(Config.nonEmptyString("PLOT_ENGINE_MODELS_FILE"))
  const inline = yield* Config.option(Config.nonEmptyString("PLOT_ENGINE_MODELS"))
  let catalog = defaultCatalog
  if (Option.isSome(file)) {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs.readFileString(file.value).pipe(
      Effect.mapError(() =>
        new Errors.RequestValidationError({ field: "PLOT_ENGINE_MODELS_FILE", reason: `cannot read ${file.value}` })
      )
    )
    catalog = merge(catalog, yield* decode(text, "PLOT_ENGINE_MODELS_FILE"))
  }
  if (Option.isSome(inline)) catalog = merge(catalog, yield* decode(inline.value, "PLOT_ENGINE_MODELS"))
  return catalog
})
