/**
 * Every failure a caller can see, as a tagged error in the type, classified from what the provider really
 * sent (status, headers, body `error.type` / `error.code`, transport reason), never from a message alone.
 *
 * @since 0.1.0
 */
import type * as AiError from "@effect/ai/AiError"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { ProviderName } from "./Domain.js"
import * as Wire from "./internal/wire.js"

// =============================================================================
// Provider errors
// =============================================================================

/** What every provider error carries: who failed, how, and what the provider asked for. */
const providerFields = {
  provider: ProviderName,
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
  self: { readonly provider: string; readonly model: string; readonly status?: number | undefined; readonly detail: string },
  what: string,
  advice: string
) => `${what} from ${self.provider}/${self.model}${self.status === undefined ? "" : ` (HTTP ${self.status})`}: ${self.detail}. ${advice}`

/**
 * The provider is rate limiting us (429 that will pass with time), or the local limiter gave up waiting.
 *
 * @since 0.1.0
 * @category Errors
 */
export class RateLimitError extends Schema.TaggedError<RateLimitError>()("RateLimitError", {
  ...providerFields,
  /** `true` when the local rate limiter refused, before any request reached the provider. */
  local: Schema.optionalWith(Schema.Boolean, { default: () => false })
}) {
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
export class TimeoutError extends Schema.TaggedError<TimeoutError>()("TimeoutError", providerFields) {
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
export class ServerError extends Schema.TaggedError<ServerError>()("ServerError", providerFields) {
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
export class AuthError extends Schema.TaggedError<AuthError>()("AuthError", providerFields) {
  override get message() {
    return describe(this, "Authentication failed", "Check the provider's API key and its permissions.")
  }
}

/**
 * The provider rejected the request itself (other 400s, 404 unknown model, 422); retrying cannot help.
 *
 * @since 0.1.0
 * @category Errors
 */
export class InvalidRequestError extends Schema.TaggedError<InvalidRequestError>()(
  "InvalidRequestError",
  providerFields
) {
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
export class ContextTooLongError extends Schema.TaggedError<ContextTooLongError>()("ContextTooLongError", {
  ...providerFields,
  /** The prompt's length in tokens, as the provider counted it. */
  promptTokens: Schema.optional(Schema.NonNegativeInt),
  /** The most the model accepts, as the provider said. */
  maxContextTokens: Schema.optional(Schema.NonNegativeInt)
}) {
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
export class NetworkError extends Schema.TaggedError<NetworkError>()("NetworkError", providerFields) {
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
export class QuotaExhaustedError extends Schema.TaggedError<QuotaExhaustedError>()("QuotaExhaustedError", {
  ...providerFields,
  reason: Schema.Literal("insufficient_quota", "spend_limit", "request_too_large")
}) {
  override get message() {
    return describe(this, "Quota exhausted", "Raise the plan's quota or spend limit, or send a smaller request.")
  }
}

/**
 * The failures that come from calling a provider.
 *
 * @since 0.1.0
 * @category Errors
 */
export type ProviderError =
  | RateLimitError
  | TimeoutError
  | ServerError
  | AuthError
  | InvalidRequestError
  | ContextTooLongError
  | NetworkError
  | QuotaExhaustedError

// =============================================================================
// Engine errors
// =============================================================================

/**
 * The request or the project context is invalid; `field` is the path of the first bad field.
 *
 * @since 0.1.0
 * @category Errors
 */
export class RequestValidationError extends Schema.TaggedError<RequestValidationError>()(
  "RequestValidationError",
  {
    field: Schema.String,
    reason: Schema.String
  }
) {
  override get message() {
    return `Invalid ${this.field}: ${this.reason}`
  }
}

/**
 * The model's reply could not be turned into a `PlotOutline`.
 *
 * @since 0.1.0
 * @category Errors
 */
export class ResponseParseError extends Schema.TaggedError<ResponseParseError>()("ResponseParseError", {
  reason: Schema.String,
  /** The start of the reply, for diagnosis (at most 200 characters). */
  excerpt: Schema.String
}) {
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
export class ProjectNotFoundError extends Schema.TaggedError<ProjectNotFoundError>()("ProjectNotFoundError", {
  projectId: Schema.String
}) {
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
export class ProviderNotConfiguredError extends Schema.TaggedError<ProviderNotConfiguredError>()(
  "ProviderNotConfiguredError",
  { provider: ProviderName }
) {
  override get message() {
    const env = this.provider === "openai" ? "OPENAI_API_KEY" : "ANTHROPIC_API_KEY"
    return `The ${this.provider} provider is not configured: set ${env}`
  }
}

/**
 * Every failure `PlotGeneration.generate` can end with.
 *
 * @since 0.1.0
 * @category Errors
 */
export type GenerationError =
  | ProviderError
  | RequestValidationError
  | ResponseParseError
  | ProjectNotFoundError
  | ProviderNotConfiguredError

// =============================================================================
// Classification
// =============================================================================

/**
 * Who was called, and when (for `retry-after` given as an HTTP date).
 *
 * @since 0.1.0
 * @category Classification
 */
export interface ClassifyContext {
  readonly provider: ProviderName
  readonly model: string
  readonly nowMillis?: number | undefined
}

/**
 * Turns an error event that arrived in a stream after HTTP 200 into a provider error, by its `error.type`.
 *
 * @since 0.1.0
 * @category Classification
 */
export const classifyStreamError = (event: unknown, context: ClassifyContext): ProviderError => {
  const body = Wire.parseErrorBody(event)
  return classifyBody({ ...context, body, headers: {}, status: undefined })
}

/**
 * Classifies a failure of `@effect/ai` into the engine's taxonomy (see DESIGN §5 and WIRE.md).
 *
 * @since 0.1.0
 * @category Classification
 */
export const classify = (error: AiError.AiError, context: ClassifyContext): ProviderError | ResponseParseError => {
  const base = { provider: context.provider, model: context.model }
  switch (error._tag) {
    case "HttpRequestError":
      return new NetworkError({ ...base, detail: `${error.reason}: ${Wire.redactSecrets(error.description ?? "request failed")}` })
    case "HttpResponseError": {
      const headers = error.response.headers as Wire.Headers
      if (error.reason !== "StatusCode" && error.response.status >= 200 && error.response.status < 300) {
        // A 2xx whose body could not be read: the gateway sent something broken.
        return new ServerError({
          ...base,
          status: error.response.status,
          ...optional("requestId", Wire.requestIdOf(headers)),
          detail: `unreadable response (${error.reason})`
        })
      }
      return classifyBody({
        ...context,
        status: error.response.status,
        headers,
        body: Wire.parseErrorBody(error.body)
      })
    }
    case "MalformedOutput":
      // The client could not decode the provider's response: the gateway is at fault, a retry may help.
      // The language model could not decode the object the model wrote: the reply is at fault.
      return error.module === "LanguageModel"
        ? new ResponseParseError({ reason: Wire.redactSecrets(error.description ?? "invalid structured output"), excerpt: "" })
        : new ServerError({ ...base, detail: Wire.redactSecrets(error.description ?? "malformed response") })
    case "MalformedInput":
      return new InvalidRequestError({ ...base, detail: Wire.redactSecrets(error.description ?? "malformed input") })
    case "UnknownError":
      return new ServerError({ ...base, detail: Wire.redactSecrets(error.description ?? "unknown failure") })
  }
}

const optional = <K extends string, A>(key: K, value: A | undefined): { [P in K]?: A } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: A }

const classifyBody = (input: {
  readonly provider: ProviderName
  readonly model: string
  readonly nowMillis?: number | undefined
  readonly status: number | undefined
  readonly headers: Wire.Headers
  readonly body: Wire.ProviderErrorBody
}): ProviderError => {
  const { body, headers, status } = input
  const detail = Wire.redactSecrets(body.message ?? (status === undefined ? "error event" : `HTTP ${status}`))
  const shouldRetry = Wire.shouldRetryHeader(headers)
  const fields = {
    provider: input.provider,
    model: input.model,
    detail,
    ...optional("status", status),
    ...optional("requestId", Wire.requestIdOf(headers) ?? body.requestId),
    ...optional("retryAfterMs", Wire.retryAfterMillis(headers, input.nowMillis ?? Date.now())),
    ...optional("shouldRetry", shouldRetry)
  }
  const type = body.type ?? ""
  const code = body.code ?? ""
  const message = body.message ?? ""

  if (type === "insufficient_quota" || code === "insufficient_quota" || type === "billing_error" || status === 402) {
    return new QuotaExhaustedError({ ...fields, reason: "insufficient_quota" })
  }
  if (body.detailsErrorCode === "enforced_spend_limit_reached") {
    return new QuotaExhaustedError({ ...fields, reason: "spend_limit" })
  }
  if (
    status === 413 || type === "request_too_large" || code === "context_length_exceeded" ||
    /prompt is too long/i.test(message)
  ) {
    return new ContextTooLongError({ ...fields, ...Wire.contextLengths(message) })
  }
  if (status === 429 || type === "rate_limit_error" || code === "rate_limit_exceeded" || type === "tokens" || type === "requests") {
    const sizes = Wire.limitAndRequested(message)
    if (/request too large/i.test(message) || (sizes !== undefined && sizes.requested > sizes.limit)) {
      return new QuotaExhaustedError({ ...fields, reason: "request_too_large" })
    }
    return new RateLimitError(fields)
  }
  if (status === 401 || status === 403 || type === "authentication_error" || type === "permission_error") {
    return new AuthError(fields)
  }
  if (status === 408 || status === 504 || type === "timeout_error") {
    return new TimeoutError(fields)
  }
  if (
    (status !== undefined && status >= 500) || type === "api_error" || type === "server_error" ||
    type === "overloaded_error"
  ) {
    return new ServerError(fields)
  }
  if ((status !== undefined && status >= 400) || type === "invalid_request_error") {
    return new InvalidRequestError(fields)
  }
  // An error event with a type we do not know, or an odd status: a retry may help.
  return new ServerError(fields)
}

// =============================================================================
// For people
// =============================================================================

/**
 * The seed's `ErrorType` values, plus `quota_exhausted`, `validation` and `parse` for the engine's own.
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
  | "validation_error"
  | "parse_error"
  | "not_found"
  | "not_configured"

const errorTypes: { readonly [K in GenerationError["_tag"]]: ErrorType } = {
  RateLimitError: "rate_limit",
  TimeoutError: "timeout",
  ServerError: "server_error",
  AuthError: "auth_error",
  InvalidRequestError: "invalid_request",
  ContextTooLongError: "context_too_long",
  NetworkError: "network_error",
  QuotaExhaustedError: "quota_exhausted",
  RequestValidationError: "validation_error",
  ResponseParseError: "parse_error",
  ProjectNotFoundError: "not_found",
  ProviderNotConfiguredError: "not_configured"
}

/**
 * The seed's error type of a failure.
 *
 * @since 0.1.0
 * @category For people
 */
export const errorType = (error: GenerationError): ErrorType => errorTypes[error._tag]

/**
 * Is this one of the failures that time may cure (rate limit, timeout, server, network)? These are retried
 * and, when retries are exhausted and `useFallback` holds, replaced by the template.
 *
 * @since 0.1.0
 * @category For people
 */
export const isTransient = (error: GenerationError): boolean =>
  Predicate.isTagged(error, "RateLimitError") || Predicate.isTagged(error, "TimeoutError") ||
  Predicate.isTagged(error, "ServerError") || Predicate.isTagged(error, "NetworkError")

/**
 * The sentence to show a writer (the seed's §5): nothing technical, nothing secret.
 *
 * @since 0.1.0
 * @category For people
 */
export const userMessage = (error: GenerationError): string => {
  switch (error._tag) {
    case "RateLimitError":
      return "We're experiencing high demand. Your request will retry automatically in a moment..."
    case "TimeoutError":
      return "Generation is taking longer than expected. Retrying with optimized settings..."
    case "ContextTooLongError":
      return "Your project context is extensive. Optimizing and retrying..."
    case "AuthError":
      return "There's an issue with API authentication. Please check your settings."
    case "ServerError":
      return "The AI service encountered an error. Retrying automatically..."
    case "NetworkError":
      return "We couldn't reach the AI service. Please check your connection and try again."
    case "QuotaExhaustedError":
      return "The AI service's usage limit has been reached. Please try again later or check your plan."
    case "InvalidRequestError":
      return "The AI service could not accept this request. Please adjust it and try again."
    case "RequestValidationError":
      return `Please check your request: ${error.field} ${error.reason}.`
    case "ResponseParseError":
      return "Unable to generate content. Please try again."
    case "ProjectNotFoundError":
      return "We couldn't find this project. Please check that it exists."
    case "ProviderNotConfiguredError":
      return "This AI provider is not set up. Please check your settings."
  }
}
