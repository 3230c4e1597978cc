/**
 * The data of plot generation: what a caller asks for, what a project knows, what comes back, and the
 * events a caller can watch while it happens. Every field is bounded, so bad input is rejected with the
 * name of the field before any model is called.
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"
import * as Validation from "./internal/validation.js"

// =============================================================================
// Shared field shapes
// =============================================================================

/** A trimmed string of at most `max` characters with something a reader can see (not only control characters). */
const Text = (max: number) =>
  Schema.Trim.pipe(
    Schema.nonEmptyString(),
    Schema.maxLength(max),
    Schema.pattern(Validation.visibleText, { message: () => "must have some visible text" })
  )

/** An optional free-text field of at most `max` characters. */
const OptionalText = (max: number) => Schema.optional(Schema.String.pipe(Schema.maxLength(max)))

/** An array of at most `max` items. */
const Bounded = <A, I, R>(item: Schema.Schema<A, I, R>, max: number) => Schema.Array(item).pipe(Schema.maxItems(max))

/**
 * The providers the AI gateway routes to.
 *
 * @since 0.1.0
 * @category Providers
 */
export const ProviderName = Schema.Literal("openai", "anthropic")

/**
 * @since 0.1.0
 * @category Providers
 */
export type ProviderName = typeof ProviderName.Type

/**
 * How much hidden reasoning a reasoning model (OpenAI's gpt-5 family, o-series) spends before it writes: more
 * effort, better plots, more output tokens (billed) and more time.
 *
 * @since 0.1.0
 * @category Providers
 */
export const ReasoningEffort = Schema.Literal("minimal", "low", "medium", "high")

/**
 * @since 0.1.0
 * @category Providers
 */
export type ReasoningEffort = typeof ReasoningEffort.Type

/**
 * What the writer asks for: a full outline, the beats of one scene, or a handful of plot suggestions.
 *
 * @since 0.1.0
 * @category Requests
 */
export const ContentKind = Schema.Literal("outline", "scene_beats", "suggestions")

/**
 * @since 0.1.0
 * @category Requests
 */
export type ContentKind = typeof ContentKind.Type

// =============================================================================
// Project context
// =============================================================================

/**
 * @since 0.1.0
 * @category Project context
 */
export class Character extends Schema.Class<Character>("plot-engine/Character")({
  name: Text(120),
  role: OptionalText(120),
  description: OptionalText(4_000),
  traits: Schema.optional(Bounded(Text(120), 30)),
  goals: OptionalText(2_000)
}) {}

/**
 * @since 0.1.0
 * @category Project context
 */
export class PlotThread extends Schema.Class<PlotThread>("plot-engine/PlotThread")({
  title: Text(200),
  summary: OptionalText(4_000),
  status: Schema.optional(Schema.Literal("open", "resolved", "abandoned"))
}) {}

/**
 * @since 0.1.0
 * @category Project context
 */
export class Location extends Schema.Class<Location>("plot-engine/Location")({
  name: Text(120),
  description: OptionalText(4_000)
}) {}

/**
 * A note about the world: its magic, history, politics, technology.
 *
 * @since 0.1.0
 * @category Project context
 */
export class WorldNote extends Schema.Class<WorldNote>("plot-engine/WorldNote")({
  topic: Text(200),
  details: Schema.String.pipe(Schema.maxLength(8_000))
}) {}

/**
 * An excerpt of what has already been written (a chapter or part of one).
 *
 * @since 0.1.0
 * @category Project context
 */
export class ContentExcerpt extends Schema.Class<ContentExcerpt>("plot-engine/ContentExcerpt")({
  title: Text(200),
  text: Schema.String.pipe(Schema.maxLength(2_000_000))
}) {}

/**
 * Everything the engine may tell the model about a novel: its characters, plot threads, locations, world notes
 * and the chapters written so far. `previousContent` may be large; the context budget cuts it to fit.
 *
 * @since 0.1.0
 * @category Project context
 */
export class ProjectContext extends Schema.Class<ProjectContext>("plot-engine/ProjectContext")({
  title: OptionalText(200),
  genre: OptionalText(100),
  synopsis: OptionalText(8_000),
  characters: Bounded(Character, 1_000),
  plotThreads: Bounded(PlotThread, 1_000),
  locations: Bounded(Location, 1_000),
  worldBuilding: Bounded(WorldNote, 1_000),
  previousContent: Bounded(ContentExcerpt, 2_000)
}) {}

// =============================================================================
// Requests
// =============================================================================

/**
 * Bounds of a request's numeric fields, exported so that callers can build forms that match.
 *
 * @since 0.1.0
 * @category Requests
 */
export const Limits = {
  promptMaxLength: 10_000,
  genreMaxLength: 100,
  modelMaxLength: 100,
  minWordCount: 50,
  maxWordCount: 20_000,
  minTemperature: 0,
  maxTemperature: 2
} as const

/**
 * What a project id may be: 1-128 letters, digits, `.`, `_` or `-`, starting with a letter or digit.
 *
 * @since 0.1.0
 * @category Requests
 */
export const projectIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

/**
 * A request for plot content: what to write, for which project, and the choices a caller can make.
 *
 * @since 0.1.0
 * @category Requests
 */
export class PlotRequest extends Schema.Class<PlotRequest>("plot-engine/PlotRequest")({
  projectId: Schema.String.pipe(
    Schema.pattern(projectIdPattern, {
      message: () => "a project id is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
    })
  ),
  userPrompt: Text(Limits.promptMaxLength),
  genre: Schema.optional(Text(Limits.genreMaxLength)),
  targetWordCount: Schema.optional(
    Schema.Int.pipe(Schema.between(Limits.minWordCount, Limits.maxWordCount))
  ),
  kind: Schema.optional(ContentKind),
  /** The provider the writer prefers: chosen when configured, at the tier the task needs. */
  provider: Schema.optional(ProviderName),
  /** Pins a model id; the provider is then required too. */
  model: Schema.optional(Text(Limits.modelMaxLength)),
  costSensitive: Schema.optional(Schema.Boolean),
  /** 0 to 2, as OpenAI takes it; Anthropic takes at most 1, and is sent 1 for anything above. */
  temperature: Schema.optional(Schema.Number.pipe(Schema.between(Limits.minTemperature, Limits.maxTemperature)))
}) {}

/**
 * The encoded (wire) form of a request, what a caller writes as JSON.
 *
 * @since 0.1.0
 * @category Requests
 */
export type PlotRequestInput = typeof PlotRequest.Encoded

/**
 * Options of one generation that are not part of the request itself.
 *
 * @since 0.1.0
 * @category Requests
 */
export interface GenerateOptions {
  /** Turn a generation that failed for good into a template result (default `true`). */
  readonly useFallback?: boolean | undefined
  /**
   * Its lane at the rate limiter (default `interactive`): `interactive` for a writer at the screen, which goes ahead
   * of queued `batch` work; `batch` for background work, which uses what the quota leaves idle.
   */
  readonly lane?: "interactive" | "batch" | undefined
}

// =============================================================================
// Outline
// =============================================================================

/**
 * The bounds of an outline's parts: characters of a text (trimmed), items of a list.
 *
 * @since 0.1.0
 * @category Outline
 */
export const OutlineLimits = {
  title: 200,
  logline: 1_000,
  acts: 12,
  actTitle: 200,
  actSummary: 4_000,
  beats: 40,
  beatSummary: 2_000,
  characters: 20,
  character: 120,
  location: 120
} as const

/**
 * One beat of a plot: what happens, who is in it, where.
 *
 * @since 0.1.0
 * @category Outline
 */
export class PlotBeat extends Schema.Class<PlotBeat>("plot-engine/PlotBeat")({
  summary: Text(OutlineLimits.beatSummary),
  characters: Bounded(Text(OutlineLimits.character), OutlineLimits.characters),
  location: Schema.String.pipe(Schema.maxLength(OutlineLimits.location))
}) {}

/**
 * @since 0.1.0
 * @category Outline
 */
export class PlotAct extends Schema.Class<PlotAct>("plot-engine/PlotAct")({
  title: Text(OutlineLimits.actTitle),
  summary: Text(OutlineLimits.actSummary),
  beats: Bounded(PlotBeat, OutlineLimits.beats).pipe(Schema.minItems(1))
}) {}

/**
 * The structured plot a model returns (and the template generator builds): every field is required so
 * that the same schema works with OpenAI's strict structured outputs.
 *
 * @since 0.1.0
 * @category Outline
 */
export class PlotOutline extends Schema.Class<PlotOutline>("plot-engine/PlotOutline")({
  title: Text(OutlineLimits.title),
  logline: Text(OutlineLimits.logline),
  acts: Bounded(PlotAct, OutlineLimits.acts).pipe(Schema.minItems(1))
}, {
  identifier: "PlotOutline",
  description:
    "A plot outline: a title, a one-sentence logline, and acts made of beats that name characters and locations"
}) {}

// =============================================================================
// Result
// =============================================================================

/**
 * Tokens a generation used, as the provider reported them (0 when it reported none).
 *
 * @since 0.1.0
 * @category Result
 */
export class Usage extends Schema.Class<Usage>("plot-engine/Usage")({
  /** Every input token, those read from or written to the prompt cache included (as OpenAI counts them). */
  inputTokens: Schema.NonNegativeInt,
  /** Everything the model wrote, its hidden reasoning included: providers bill reasoning as output. */
  outputTokens: Schema.NonNegativeInt,
  totalTokens: Schema.NonNegativeInt,
  /** Of the output, the hidden reasoning of a reasoning model (when the provider reported it). */
  reasoningTokens: Schema.optional(Schema.NonNegativeInt),
  /** Of the input, what the provider read from its prompt cache (billed at the cached price). */
  cachedInputTokens: Schema.optional(Schema.NonNegativeInt),
  /** Of the input, what the provider wrote to its prompt cache (Anthropic bills it above the input price). */
  cacheWriteTokens: Schema.optional(Schema.NonNegativeInt)
}) {
  static readonly zero = new Usage({ inputTokens: 0, outputTokens: 0, totalTokens: 0 })
}

/**
 * What one billed attempt of a generation used and cost: the one that produced the plot, and those that
 * produced nothing used (an unreadable reply, an answer cut off at its limit, a stream that failed midway), which
 * the provider bills all the same.
 *
 * @since 0.1.0
 * @category Result
 */
export class AttemptCost extends Schema.Class<AttemptCost>("plot-engine/AttemptCost")({
  provider: ProviderName,
  model: Schema.String,
  /**
   * The deployment the call went to: its `id` in the deployments file (`openai` or `anthropic` without one), whose
   * key was billed. Optional for results stored before it was recorded.
   */
  deployment: Schema.optional(Schema.String),
  /** `success`, or the kind of failure (`Errors.errorType`). */
  outcome: Schema.String,
  usage: Usage,
  /** `true` when the provider reported no usage (a stream cut off): the prompt and what it had written. */
  estimated: Schema.Boolean,
  /** `null` when the model's price is unknown. */
  costUsd: Schema.NullOr(Schema.NonNegative)
}) {}

/**
 * The figures of one generation, as they are logged and sent to analytics.
 *
 * @since 0.1.0
 * @category Result
 */
export class GenerationMetrics extends Schema.Class<GenerationMetrics>("plot-engine/GenerationMetrics")({
  requestDurationMs: Schema.NonNegative,
  promptTokens: Schema.NonNegativeInt,
  completionTokens: Schema.NonNegativeInt,
  totalTokens: Schema.NonNegativeInt,
  wordCount: Schema.NonNegativeInt,
  warnings: Schema.NonNegativeInt,
  isTemplate: Schema.Boolean,
  retryCount: Schema.NonNegativeInt,
  /** Rate-limit errors met on the way (429s). */
  rateLimitErrors: Schema.NonNegativeInt,
  /** Why the AI failed, for a template result (`Errors.errorType`). */
  errorType: Schema.optional(Schema.String),
  modelUsed: Schema.String,
  /** `null` when the model's price is unknown. */
  estimatedCostUSD: Schema.NullOr(Schema.NonNegative)
}) {}

/**
 * What a generation produced. `provider` and `model` are `"template"` when the template generator
 * built it; `estimatedCostUsd` is `null` when the model's price is unknown (never a false 0).
 *
 * @since 0.1.0
 * @category Result
 */
export class PlotResult extends Schema.Class<PlotResult>("plot-engine/PlotResult")({
  requestId: Schema.String,
  content: Schema.String,
  outline: PlotOutline,
  provider: Schema.Union(ProviderName, Schema.Literal("template")),
  model: Schema.String,
  /** The deployment that answered (see `AttemptCost.deployment`); absent when the template built the result. */
  deployment: Schema.optional(Schema.String),
  reasoning: Schema.String,
  usage: Usage,
  /**
   * What every billed attempt of the generation cost together (see `attempts`), failed ones included; `null`
   * when a billed model's price is unknown (never a false 0).
   */
  estimatedCostUsd: Schema.NullOr(Schema.NonNegative),
  /** What the call was expected to cost before it was made (prompt tokens, expected reply), or `null`. */
  preCallEstimateUsd: Schema.NullOr(Schema.NonNegative),
  retryCount: Schema.NonNegativeInt,
  warnings: Schema.Array(Schema.String),
  isTemplate: Schema.Boolean,
  durationMs: Schema.NonNegative,
  wordCount: Schema.NonNegativeInt,
  /** The figures of this generation, for analytics. */
  metrics: GenerationMetrics,
  /** Every attempt the provider billed, in order: what each used and cost. */
  attempts: Schema.optionalWith(Schema.Array(AttemptCost), { default: () => [] })
}) {}

// =============================================================================
// Events
// =============================================================================

/**
 * The stages of the pipeline, in order.
 *
 * @since 0.1.0
 * @category Events
 */
export const Stage = Schema.Literal("retrieving_context", "selecting_model", "building_prompt", "generating", "parsing")

/**
 * @since 0.1.0
 * @category Events
 */
export type Stage = typeof Stage.Type

/**
 * Everything `generateStream` tells a caller while a generation runs; the last event is `Completed`.
 *
 * @since 0.1.0
 * @category Events
 */
export const GenerationEvent = Schema.Union(
  Schema.TaggedStruct("Progress", {
    stage: Stage,
    message: Schema.String,
    progress: Schema.Number.pipe(Schema.between(0, 100))
  }),
  Schema.TaggedStruct("ModelSelected", {
    provider: ProviderName,
    model: Schema.String,
    reasoning: Schema.String,
    /** The cost expected before the call, or `null` when the model's price is unknown. */
    estimatedCostUsd: Schema.NullOr(Schema.NonNegative)
  }),
  /**
   * The outline's Markdown as its parts complete (a heading, an act, a beat): joined, the deltas of an attempt are
   * the result's `content`. Never the model's raw JSON.
   */
  Schema.TaggedStruct("TextDelta", { delta: Schema.String }),
  /** The outline's title and logline, as soon as both are written. */
  Schema.TaggedStruct("OutlineHeading", { title: Schema.String, logline: Schema.String }),
  /** An act's title and summary, as soon as both are written (acts count from 1). */
  Schema.TaggedStruct("ActStarted", { act: Schema.Int, title: Schema.String, summary: Schema.String }),
  /** A beat, as soon as it is whole (beats count from 1 within their act). */
  Schema.TaggedStruct("BeatWritten", {
    act: Schema.Int,
    beat: Schema.Int,
    summary: Schema.String,
    characters: Schema.Array(Schema.String),
    location: Schema.String
  }),
  /**
   * The request waits for the local quota of its model (`place` 1 is next; `expectedWaitMs` an estimate), told when
   * the wait begins and again as it moves, so that a screen can say "about 40 s".
   */
  Schema.TaggedStruct("Queued", {
    provider: ProviderName,
    model: Schema.String,
    place: Schema.Int,
    expectedWaitMs: Schema.NonNegative
  }),
  /** A failed attempt will be made again on the same model after `delayMs` (text deltas since the last attempt began are void). */
  Schema.TaggedStruct("Retrying", {
    provider: ProviderName,
    model: Schema.String,
    errorType: Schema.String,
    message: Schema.String,
    attempt: Schema.Int,
    delayMs: Schema.NonNegative
  }),
  /**
   * An attempt whose outline had begun to reach the caller failed: every `TextDelta` and outline part since that
   * attempt began is void (clear it from the screen). The next attempt, if any (`Retrying` or `Fallback` follows),
   * writes the answer from its start; the result is built from one complete answer only.
   */
  Schema.TaggedStruct("Restarted", {
    provider: ProviderName,
    model: Schema.String,
    errorType: Schema.String,
    message: Schema.String
  }),
  /** The chain moves on to another model. */
  Schema.TaggedStruct("Fallback", {
    from: Schema.String,
    to: Schema.String,
    reason: Schema.String
  }),
  /** A model's circuit breaker changed state. */
  Schema.TaggedStruct("CircuitChanged", {
    provider: ProviderName,
    model: Schema.String,
    state: Schema.Literal("closed", "open", "half_open")
  }),
  Schema.TaggedStruct("Warning", { message: Schema.String }),
  Schema.TaggedStruct("Completed", { result: PlotResult })
)

/**
 * @since 0.1.0
 * @category Events
 */
export type GenerationEvent = typeof GenerationEvent.Type
