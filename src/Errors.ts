/**
 * Every failure a caller can see, as a tagged error in the type. Provider failures are classified from what the
 * provider really sent (status, headers, body `error.type` / `error.code`, transport reason), never from a message
 * alone; `docs/provider-wire.md` lists the cases.
 *
 * @example
 * ```ts
 * import { Errors, PlotGeneration } from "plot-engine"
 * import { Effect } from "effect"
 *
 * const program = PlotGeneration.generate({ projectId: "my-novel", userPrompt: "What happens next?" }).pipe(
 *   Effect.catchTags({
 *     RateLimitError: (error) => Effect.succeed(`busy, retry in ${error.retryAfterMs ?? 1000} ms`),
 *     ProjectNotFoundError: (error) => Effect.succeed(`no project ${error.projectId}`)
 *   }),
 *   // Whatever is left is still a GenerationError: a sentence for the writer
 *   Effect.catchAll((error) => Effect.succeed(Errors.userMessage(error)))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Domain from "./Domain.js"
import * as Validation from "./internal/validation.js"

/**
 * Marks every error of this module, for `isGenerationError`.
 *
 * @since 0.1.0
 * @category Type ids
 */
export const TypeId: unique symbol = Symbol.for("plot-engine/Errors")

/**
 * @since 0.1.0
 * @category Type ids
 */
export type TypeId = typeof TypeId

// =============================================================================
// Provider errors
// =============================================================================

/**
 * A per-minute limit of a provider, as its 429s name it.
 *
 * @since 0.1.0
 * @category Errors
 */
export const RateLimitKind = Schema.Literal("requests", "tokens", "input-tokens", "output-tokens")

/**
 * @since 0.1.0
 * @category Errors
 */
export type RateLimitKind = typeof RateLimitKind.Type

/** What every provider error carries: who failed, how, and what the provider asked for. */
const providerFields = {
  provider: Domain.ProviderName,
  model: Schema.String,
  /** The HTTP status, when the failure came with one. */
  status: Schema.optional(Schema.Int),
  /** The provider's request id (`x-request-id` / `request-id`), to quote to its support. */
  requestId: Schema.optional(Schema.String),
  /** How long the provider asked us to wait before trying again, in milliseconds. */
  retryAfterMs: Schema.optional(Schema.NonNegative),
  /** `x-should-retry`, when the provider said whether a retry can help. */
  shouldRetry: Schema.optional(Schema.Boolean),
  /** The provider's own words, with anything shaped like a key removed. */
  detail: Schema.String
}

const describe = (
  self: {
    readonly provider: string
    readonly model: string
    readonly status?: number | undefined
    readonly detail: string
  },
  what: string,
  advice: string
) =>
  `${what} from ${self.provider}/${self.model}${self.status === undefined ? "" : ` (HTTP ${self.status})`}: ${
    self.detail.replace(/[.\s]+$/, "")
  }. ${advice}`

/**
 * The provider is rate limiting us (429 that will pass with time), or the local limiter gave up waiting.
 *
 * @since 0.1.0
 * @category Errors
 */
export class RateLimitError
  extends Schema.TaggedError<RateLimitError>("plot-engine/Errors/RateLimitError")("RateLimitError", {
    ...providerFields,
    /** `true` when the local rate limiter refused, before any request reached the provider. */
    local: Schema.optionalWith(Schema.Boolean, { default: () => false }),
    /**
     * Which of the provider's per-minute limits it said was reached, when it said: requests, tokens (OpenAI's
     * tokens per minute), input or output tokens (Anthropic's). The rate limiter then cuts and empties that
     * budget only.
     */
    limit: Schema.optional(RateLimitKind)
  })
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, this.local ? "Local rate limit" : "Rate limited", "Retry after the requested delay.")
  }
}

/**
 * An attempt or the whole generation took longer than its deadline, or the gateway timed out (408, 504).
 *
 * @since 0.1.0
 * @category Errors
 */
export class TimeoutError extends Schema.TaggedError<TimeoutError>("plot-engine/Errors/TimeoutError")("TimeoutError", {
  ...providerFields,
  /**
   * Which limit: the provider's or its gateway's (`provider`: 408, 504, `timeout_error`), the attempt timeout
   * (`attempt`), the generation's deadline (`deadline`), or a stream's: nothing written in time (`first-token`),
   * silent once writing (`idle`), crawling before anything could be shown (`throughput`). The engine's own limits
   * on a call move the generation to another deployment or model at once: that route is not called again.
   */
  kind: Schema.optionalWith(
    Schema.Literal("provider", "attempt", "deadline", "first-token", "idle", "throughput"),
    { default: () => "provider" as const }
  )
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Timed out", "Retry, or raise the timeout if the model is slow.")
  }
}

/**
 * The provider failed (500-599, 529 overloaded, an error event mid-stream, an unreadable response).
 *
 * @since 0.1.0
 * @category Errors
 */
export class ServerError
  extends Schema.TaggedError<ServerError>("plot-engine/Errors/ServerError")("ServerError", providerFields)
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Server error", "Retry later or use another model.")
  }
}

/**
 * The key is missing, wrong or not allowed to use the model (401, 403).
 *
 * @since 0.1.0
 * @category Errors
 */
export class AuthError
  extends Schema.TaggedError<AuthError>("plot-engine/Errors/AuthError")("AuthError", providerFields)
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Authentication failed", "Check the provider's API key and its permissions.")
  }
}

/**
 * The provider rejected the request itself (other 400s, 422); retrying cannot help. (A model it does not serve is
 * a `ModelNotFoundError`.)
 *
 * @since 0.1.0
 * @category Errors
 */
export class InvalidRequestError
  extends Schema.TaggedError<InvalidRequestError>("plot-engine/Errors/InvalidRequestError")(
    "InvalidRequestError",
    providerFields
  )
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Invalid request", "Change the request or the model; retrying will not help.")
  }
}

/**
 * The prompt does not fit the model's context window (413, `context_length_exceeded`, "prompt is too long").
 *
 * @since 0.1.0
 * @category Errors
 */
export class ContextTooLongError
  extends Schema.TaggedError<ContextTooLongError>("plot-engine/Errors/ContextTooLongError")("ContextTooLongError", {
    ...providerFields,
    /** The prompt's length in tokens, as the provider counted it. */
    promptTokens: Schema.optional(Schema.NonNegativeInt),
    /** The most the model accepts, as the provider said. */
    maxContextTokens: Schema.optional(Schema.NonNegativeInt)
  })
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Context too long", "Send less project context or use a model with a larger window.")
  }
}

/**
 * The provider could not be reached (connection refused or reset, DNS, TLS).
 *
 * @since 0.1.0
 * @category Errors
 */
export class NetworkError
  extends Schema.TaggedError<NetworkError>("plot-engine/Errors/NetworkError")("NetworkError", providerFields)
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Network failure", "Check the gateway URL and the connection.")
  }
}

/**
 * The account's quota or spend limit is used up, or one request is larger than a whole per-minute budget:
 * waiting cannot help.
 *
 * @since 0.1.0
 * @category Errors
 */
export class QuotaExhaustedError
  extends Schema.TaggedError<QuotaExhaustedError>("plot-engine/Errors/QuotaExhaustedError")("QuotaExhaustedError", {
    ...providerFields,
    reason: Schema.Literal("insufficient_quota", "spend_limit", "request_too_large")
  })
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Quota exhausted", "Raise the plan's quota or spend limit, or send a smaller request.")
  }
}

/**
 * The provider does not serve the model, or the key may not use it (OpenAI `model_not_found`, Anthropic
 * `not_found_error`): the same model will not answer, another may.
 *
 * @since 0.1.0
 * @category Errors
 */
export class ModelNotFoundError extends Schema.TaggedError<ModelNotFoundError>("plot-engine/Errors/ModelNotFoundError")(
  "ModelNotFoundError",
  providerFields
) {
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Unknown model", "Check the model id, and that the key may use it.")
  }
}

/**
 * The answer stopped at its output limit before the outline was written: a reasoning model spent the limit on
 * hidden reasoning, or the reply was longer than the limit. The tokens were billed; the same request would fail
 * the same way, so a retry needs a larger limit or less reasoning (`shouldRetry` is `false` when the model can
 * give neither).
 *
 * @since 0.1.0
 * @category Errors
 */
export class IncompleteResponseError extends Schema.TaggedError<IncompleteResponseError>(
  "plot-engine/Errors/IncompleteResponseError"
)("IncompleteResponseError", {
  ...providerFields,
  /** The output limit that ran out. */
  maxOutputTokens: Schema.NonNegativeInt,
  /** What the answer used of it (billed as output), and how much of that was hidden reasoning. */
  outputTokens: Schema.NonNegativeInt,
  reasoningTokens: Schema.optional(Schema.NonNegativeInt)
}) {
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Incomplete answer", "Give it a larger output limit or a lower reasoning effort.")
  }
}

/**
 * The model declined to write the answer: an OpenAI `refusal` content part, an Anthropic `stop_reason: "refusal"`
 * (or any model stopped by a content filter), or a safety system's 400 (`content_policy_violation`; Azure's
 * `content_filter`). `reason` is the provider's own explanation or code. The same request to the same model would
 * be declined again: it is never retried there; the engine may ask the other provider's model of the same tier
 * once (`RetryPolicy`'s `onRefusal`).
 *
 * @since 0.2.0
 * @category Errors
 */
export class RefusalError extends Schema.TaggedError<RefusalError>("plot-engine/Errors/RefusalError")(
  "RefusalError",
  {
    ...providerFields,
    /** How the refusal came: a refusal in the answer, or a content filter's rejection of the request. */
    kind: Schema.Literal("answer", "content-filter"),
    /** The provider's explanation (OpenAI's refusal text) or code (`refusal`, `content_policy_violation`). */
    reason: Schema.String
  }
) {
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return describe(this, "Declined", "Another model may write it; the same one will decline again.")
  }
}

/**
 * The failures that come from calling a provider, as a schema (to encode them, or to declare them in an API).
 *
 * @since 0.1.0
 * @category Errors
 */
export const ProviderError = Schema.Union(
  RateLimitError,
  TimeoutError,
  ServerError,
  AuthError,
  InvalidRequestError,
  ContextTooLongError,
  NetworkError,
  QuotaExhaustedError,
  IncompleteResponseError,
  ModelNotFoundError,
  RefusalError
)

/**
 * @since 0.1.0
 * @category Errors
 */
export type ProviderError = typeof ProviderError.Type

// =============================================================================
// Engine errors
// =============================================================================

/**
 * The request or the project context is invalid; `field` is the path of the first bad field.
 *
 * @since 0.1.0
 * @category Errors
 */
export class RequestValidationError
  extends Schema.TaggedError<RequestValidationError>("plot-engine/Errors/RequestValidationError")(
    "RequestValidationError",
    {
      field: Schema.String,
      reason: Schema.String
    }
  )
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return `Invalid ${this.field}: ${this.reason}`
  }

  /**
   * The first issue of a Schema parse error, naming its field as a path under `root` (`project.characters[3].name`).
   * Quoted values are shortened: the bad value may be megabytes long, and the error must not carry it back.
   */
  static fromParseError(error: ParseResult.ParseError, root?: string): RequestValidationError {
    const issues = ParseResult.ArrayFormatter.formatIssueSync(Validation.withShortActuals(error.issue))
    const first = issues[0]
    if (first === undefined) return new RequestValidationError({ field: root ?? "input", reason: "is invalid" })
    return new RequestValidationError({
      field: Validation.formatPath(first.path, root),
      // Not an object at all: Schema's own words ("Expected plot-engine/PlotRequest (Encoded side), actual
      // [1,2]") name the class, not what the client should send.
      reason: first.path.length === 0 && /^Expected .*\(Encoded side\), actual /s.test(first.message)
        ? `must be a JSON object with the ${root ?? "request"}'s fields`
        : Validation.abbreviate(expectedOneOf(issues, first) ?? first.message)
    })
  }
}

/**
 * A choice among literals refused: Schema gives one issue per member of the union, each at the same field
 * (`Expected "openai", actual "google"`, then `Expected "anthropic", …`); told as one, every allowed value named.
 */
const expectedOneOf = (
  issues: ReadonlyArray<ParseResult.ArrayFormatterIssue>,
  first: ParseResult.ArrayFormatterIssue
): string | undefined => {
  const samePath = issues.filter((issue) =>
    issue.path.length === first.path.length && issue.path.every((key, i) => key === first.path[i])
  )
  if (samePath.length < 2) return undefined
  const parts = samePath.map((issue) => /^Expected (.*), actual (.*)$/s.exec(issue.message))
  const actual = parts[0]?.[2]
  if (parts.some((part) => part === null || part[2] !== actual)) return undefined
  // An optional field's `undefined`: what a JSON client means by leaving the field out, not a value it can send.
  const expected = parts.map((part) => part![1]).filter((value) => value !== "undefined")
  return expected.length === 0 ? undefined : `Expected ${expected.join(" or ")}, actual ${actual}`
}

/**
 * The model's reply could not be turned into a `PlotOutline`.
 *
 * @since 0.1.0
 * @category Errors
 */
export class ResponseParseError
  extends Schema.TaggedError<ResponseParseError>("plot-engine/Errors/ResponseParseError")("ResponseParseError", {
    reason: Schema.String,
    /** The start of the reply, for diagnosis (at most 200 characters). */
    excerpt: Schema.String
  })
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return `The model's reply is not a valid plot outline: ${this.reason}`
  }
}

/**
 * No project with this id is in the project context store.
 *
 * @since 0.1.0
 * @category Errors
 */
export class ProjectNotFoundError
  extends Schema.TaggedError<ProjectNotFoundError>("plot-engine/Errors/ProjectNotFoundError")("ProjectNotFoundError", {
    projectId: Schema.String
  })
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return `No project "${this.projectId}" in the project store`
  }
}

/**
 * A provider was asked for that has no configuration (no API key).
 *
 * @since 0.1.0
 * @category Errors
 */
export class ProviderNotConfiguredError
  extends Schema.TaggedError<ProviderNotConfiguredError>("plot-engine/Errors/ProviderNotConfiguredError")(
    "ProviderNotConfiguredError",
    { provider: Domain.ProviderName }
  )
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    const env = this.provider === "openai" ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY"
    const dialect = this.provider === "openai" ? "openai-responses" : "anthropic-messages"
    return `The ${this.provider} provider is not configured: set ${env}, or give a deployment of dialect ${dialect}`
  }
}

/**
 * A project's spend budget would be passed: the generation was refused before any call, on its pre-call
 * estimate, by the `SpendLedger`.
 *
 * @since 0.1.0
 * @category Errors
 */
export class BudgetExceededError
  extends Schema.TaggedError<BudgetExceededError>("plot-engine/Errors/BudgetExceededError")("BudgetExceededError", {
    projectId: Schema.String,
    period: Schema.Literal("day", "month"),
    limitUsd: Schema.NonNegative,
    /** Spent in the period so far, generations under way included. */
    spentUsd: Schema.NonNegative,
    /** What this generation was expected to cost. */
    estimateUsd: Schema.NonNegative,
    /** When the period ends and its budget is whole again (epoch milliseconds). */
    resetsAt: Schema.Number
  })
{
  readonly [TypeId]: TypeId = TypeId
  override get message() {
    return `Project "${this.projectId}" would pass its ${this.period === "day" ? "daily" : "monthly"} budget of $${
      this.limitUsd.toFixed(2)
    }: $${this.spentUsd.toFixed(4)} spent, this generation expected to cost $${this.estimateUsd.toFixed(4)}`
  }
}

/**
 * Every failure `PlotGeneration.generate` can end with, as a schema.
 *
 * @since 0.1.0
 * @category Errors
 */
export const GenerationError = Schema.Union(
  ...ProviderError.members,
  RequestValidationError,
  ResponseParseError,
  ProjectNotFoundError,
  ProviderNotConfiguredError,
  BudgetExceededError
)

/**
 * @since 0.1.0
 * @category Errors
 */
export type GenerationError = typeof GenerationError.Type

/**
 * Whether a value is one of this module's errors.
 *
 * @example
 * ```ts
 * import { Errors } from "plot-engine"
 *
 * Errors.isGenerationError(new Errors.ProjectNotFoundError({ projectId: "x" })) // true
 * Errors.isGenerationError(new Error("boom")) // false
 * ```
 *
 * @since 0.1.0
 * @category Guards
 */
export const isGenerationError = (u: unknown): u is GenerationError => Predicate.hasProperty(u, TypeId)

/**
 * Whether a value is one of the failures of a provider call.
 *
 * @since 0.1.0
 * @category Guards
 */
export const isProviderError = (u: unknown): u is ProviderError => isGenerationError(u) && providerErrorTags.has(u._tag)

const providerErrorTags: ReadonlySet<string> = new Set(ProviderError.members.map((member) => member._tag))

// =============================================================================
// For people
// =============================================================================

/**
 * The kind of a failure as one word, for logs, metrics and clients: one per error of this module.
 *
 * @since 0.1.0
 * @category For people
 */
export type ErrorType =
  | "rate_limit"
  | "timeout"
  | "server_error"
  | "auth_error"
  | "invalid_request"
  | "context_too_long"
  | "network_error"
  | "quota_exhausted"
  | "incomplete_response"
  | "model_not_found"
  | "refusal"
  | "validation_error"
  | "parse_error"
  | "not_found"
  | "not_configured"
  | "budget_exceeded"

const errorTypes: { readonly [K in GenerationError["_tag"]]: ErrorType } = {
  RateLimitError: "rate_limit",
  TimeoutError: "timeout",
  ServerError: "server_error",
  AuthError: "auth_error",
  InvalidRequestError: "invalid_request",
  ContextTooLongError: "context_too_long",
  NetworkError: "network_error",
  QuotaExhaustedError: "quota_exhausted",
  IncompleteResponseError: "incomplete_response",
  ModelNotFoundError: "model_not_found",
  RefusalError: "refusal",
  RequestValidationError: "validation_error",
  ResponseParseError: "parse_error",
  ProjectNotFoundError: "not_found",
  ProviderNotConfiguredError: "not_configured",
  BudgetExceededError: "budget_exceeded"
}

/**
 * The kind of a failure (see `ErrorType`).
 *
 * @since 0.1.0
 * @category For people
 */
export const errorType = (error: GenerationError): ErrorType => errorTypes[error._tag]

/**
 * Is this one of the failures that time may cure (rate limit, timeout, server, network)? These are retried
 * and, when retries are exhausted and `useFallback` holds, replaced by the template, except a refusal of the local
 * rate limiter, which the caller can answer sooner than a template would (see `Outcome`).
 *
 * @since 0.1.0
 * @category For people
 */
export const isTransient = (error: GenerationError): boolean =>
  Predicate.isTagged(error, "RateLimitError") || Predicate.isTagged(error, "TimeoutError") ||
  Predicate.isTagged(error, "ServerError") || Predicate.isTagged(error, "NetworkError")

/**
 * The sentence to show a writer when a generation has ended on this failure: what happened and what they can do,
 * nothing technical, nothing secret, and no promise of a retry (nothing more will happen). For a failure that will
 * be retried, `retryMessage` says so.
 *
 * @since 0.1.0
 * @category For people
 */
export const userMessage = (error: GenerationError): string => {
  switch (error._tag) {
    case "RateLimitError":
      return error.local
        ? `Too many plots are being generated right now. Please try again${inAbout(error.retryAfterMs)}.`
        : `The AI service is handling too many requests right now. Please try again${inAbout(error.retryAfterMs)}.`
    case "TimeoutError":
      return "The AI service took too long to write this plot. Please try again, or ask for a shorter one."
    case "ContextTooLongError":
      return "Your project context is too large for the AI model, even trimmed. Please shorten it or choose a model with a larger context."
    case "AuthError":
      return "There's an issue with API authentication. Please check your settings."
    case "ServerError":
      return "The AI service failed to answer. Please try again later."
    case "NetworkError":
      return "We couldn't reach the AI service. Please check your connection and try again."
    case "QuotaExhaustedError":
      return "The AI service's usage limit has been reached. Please try again later or check your plan."
    case "InvalidRequestError":
      return "The AI service could not accept this request. Please adjust it and try again."
    case "IncompleteResponseError":
      return "The AI ran out of room before it finished the plot. Please ask for a shorter one."
    case "ModelNotFoundError":
      return "This AI model is not available. Please choose another model or check your settings."
    case "RefusalError":
      return "The AI declined to write this passage. Dark material sometimes trips an AI service's safety checks; nothing is wrong with your request. You can try another model, or describe the hardest moments less explicitly."
    case "RequestValidationError":
      return `Please check your request: ${error.field} ${error.reason.replace(/[.\s]+$/, "")}.`
    case "ResponseParseError":
      return "The AI's answer could not be read as a plot. Please try again."
    case "ProjectNotFoundError":
      return "We couldn't find this project. Please check that it exists."
    case "ProviderNotConfiguredError":
      return "This AI provider is not set up. Please check your settings."
    case "BudgetExceededError":
      return `This project has reached its spending limit for ${
        error.period === "day" ? "today" : "this month"
      }. Please try again when it resets, or raise the limit.`
  }
}

const inAbout = (millis: number | undefined) =>
  millis === undefined ? " in a few minutes" : ` in about ${Math.max(1, Math.ceil(millis / 1000))} s`

/**
 * The sentence to show a writer while a failed attempt is about to be made again on the same model: what
 * happened and that a retry is coming. Only for a failure that is retried; `userMessage` is the final word.
 *
 * @since 0.1.0
 * @category For people
 */
export const retryMessage = (error: GenerationError): string => {
  switch (error._tag) {
    case "RateLimitError":
      return "We're experiencing high demand. Your request will retry automatically in a moment..."
    case "TimeoutError":
      return "Generation is taking longer than expected. Trying again..."
    case "ContextTooLongError":
      return "Your project context is extensive. Optimizing and retrying..."
    case "ServerError":
      return "The AI service encountered an error. Retrying automatically..."
    case "NetworkError":
      return "We couldn't reach the AI service. Retrying automatically..."
    case "IncompleteResponseError":
      return "The AI ran out of room before it finished. Asking again with more room..."
    case "ResponseParseError":
      return "The AI's answer could not be read. Asking again..."
    default:
      return userMessage(error)
  }
}

/**
 * Why a template stands in for the AI's plot, as the end of a sentence ("... because <reason>").
 *
 * @since 0.1.0
 * @category For people
 */
export const templateReason = (error: GenerationError): string => {
  switch (error._tag) {
    case "RateLimitError":
      return "the AI service kept refusing for its rate limit"
    case "TimeoutError":
      return "the AI service did not answer in time"
    case "ServerError":
      return "the AI service kept failing"
    case "NetworkError":
      return "the AI service could not be reached"
    case "IncompleteResponseError":
      return "the AI kept running out of room before it finished"
    case "ResponseParseError":
      return "the AI's answers could not be read as a plot"
    default:
      return `the AI failed (${errorType(error)})`
  }
}
