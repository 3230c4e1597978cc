/**
 * Classifying what a provider sent into the engine's tagged errors: from the HTTP status, the headers and the
 * error body's `error.type` / `error.code` (either dialect, `docs/provider-wire.md`), or from the transport's
 * reason; never from a message alone, except where a provider gives nothing else (context-length and
 * request-too-large messages, which only their text tells apart, and Anthropic's account limits, which it sends as a
 * plain 400 `invalid_request_error`).
 *
 * @internal
 */
import type * as AiError from "@effect/ai/AiError"
import type * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as Wire from "./wire.js"

/**
 * Who was called, and when (for `retry-after` given as an HTTP date).
 */
export interface ClassifyContext {
  readonly provider: Domain.ProviderName
  readonly model: string
  readonly nowMillis?: number | undefined
}

/**
 * The codes of a safety system's rejection of the request: OpenAI's `content_policy_violation` and, on reasoning
 * models and in the Responses API (a 400, or a streamed `response.failed`), `invalid_prompt` and its kin; Azure's
 * `content_filter`.
 */
const contentPolicyCodes: ReadonlySet<string> = new Set([
  "content_policy_violation",
  "content_filter",
  "invalid_prompt",
  "cyber_policy",
  "bio_policy"
])

/** Anthropic's 400 when the organization's prepaid credits are spent. */
const creditBalanceTooLow = /credit balance is too low/i

/** Anthropic's 400 when a workspace or organization reached the spend limit it set itself (until a date it names). */
const usageLimitReached = /reached your specified (?:workspace )?API usage limits/i

/** Anthropic's 400 when the input and `max_tokens` together exceed the model's window (`178959 + 64000 > 200000`). */
const inputAndOutputOverWindow = /input length and `?max_tokens`? exceed context limit/i

/**
 * Turns an error event that arrived in a stream after HTTP 200 into a provider error, by its `error.type`.
 */
export const classifyStreamError = (event: unknown, context: ClassifyContext): Errors.ProviderError => {
  const body = Wire.parseErrorBody(event)
  return classifyBody({ ...context, body, headers: {}, status: undefined })
}

/**
 * Classifies a failure of `@effect/ai` into the engine's errors: transport failures are `NetworkError`s, a 2xx
 * that could not be read is a `ServerError`, an object the model wrote that does not decode is a
 * `ResponseParseError`, and any other HTTP failure is classified from its status, headers and body.
 */
export const classify = (
  error: AiError.AiError,
  context: ClassifyContext
): Errors.ProviderError | Errors.ResponseParseError => {
  const base = { provider: context.provider, model: context.model }
  switch (error._tag) {
    case "HttpRequestError":
      return new Errors.NetworkError({
        ...base,
        detail: `${error.reason}: ${Wire.redactSecrets(error.description ?? "request failed")}`
      })
    case "HttpResponseError": {
      const headers = error.response.headers as Wire.Headers
      if (error.reason !== "StatusCode" && error.response.status >= 200 && error.response.status < 300) {
        // A 2xx whose body could not be read: the gateway sent something broken.
        return new Errors.ServerError({
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
      // From `LanguageModel`, the object the model wrote does not decode: the reply is at fault. From a client, the
      // provider's response itself could not be read: the gateway is at fault, and a retry may help. (A tool call
      // cut off at the output limit is read before this, by the call: see `generation/Call`.)
      return error.module === "LanguageModel"
        ? new Errors.ResponseParseError({
          reason: Wire.redactSecrets(error.description ?? "invalid structured output"),
          excerpt: ""
        })
        : new Errors.ServerError({ ...base, detail: Wire.redactSecrets(error.description ?? "malformed response") })
    case "MalformedInput":
      return new Errors.InvalidRequestError({
        ...base,
        detail: Wire.redactSecrets(error.description ?? "malformed input")
      })
    case "UnknownError":
      return new Errors.ServerError({ ...base, detail: Wire.redactSecrets(error.description ?? "unknown failure") })
  }
}

const optional = <K extends string, A>(key: K, value: A | undefined): { [P in K]?: A } =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: A }

const classifyBody = (input: {
  readonly provider: Domain.ProviderName
  readonly model: string
  readonly nowMillis?: number | undefined
  readonly status: number | undefined
  readonly headers: Wire.Headers
  readonly body: Wire.ProviderErrorBody
}): Errors.ProviderError => {
  const { body, status } = input
  // A mid-stream error has no headers of its own; OpenAI puts a 429's inside its body.
  const headers = body.headers === undefined ? input.headers : { ...body.headers, ...input.headers }
  const detail = Wire.redactSecrets(body.message ?? (status === undefined ? "error event" : `HTTP ${status}`))
  const shouldRetry = Wire.shouldRetryHeader(headers)
  const fields = {
    provider: input.provider,
    model: input.model,
    detail,
    ...optional("status", status),
    ...optional("requestId", Wire.requestIdOf(headers) ?? body.requestId),
    ...optional(
      "retryAfterMs",
      Wire.retryAfterMillis(headers, input.nowMillis ?? Date.now()) ?? Wire.retryAfterInMessage(body.message ?? "")
    ),
    ...optional("shouldRetry", shouldRetry)
  }
  const type = body.type ?? ""
  const code = body.code ?? ""
  const message = body.message ?? ""

  if (
    type === "insufficient_quota" || code === "insufficient_quota" || type === "billing_error" || status === 402 ||
    creditBalanceTooLow.test(message)
  ) {
    return new Errors.QuotaExhaustedError({ ...fields, reason: "insufficient_quota" })
  }
  if (body.detailsErrorCode === "enforced_spend_limit_reached" || usageLimitReached.test(message)) {
    return new Errors.QuotaExhaustedError({ ...fields, reason: "spend_limit" })
  }
  if (
    status === 413 || type === "request_too_large" || code === "context_length_exceeded" ||
    /prompt is too long/i.test(message) || inputAndOutputOverWindow.test(message)
  ) {
    return new Errors.ContextTooLongError({ ...fields, ...Wire.contextLengths(message) })
  }
  if (
    status === 429 || type === "rate_limit_error" || code === "rate_limit_exceeded" ||
    code === "too_many_requests" || type === "too_many_requests" || type === "tokens" ||
    type === "requests"
  ) {
    const sizes = Wire.limitAndRequested(message)
    if (/request too large/i.test(message) || (sizes !== undefined && sizes.requested > sizes.limit)) {
      return new Errors.QuotaExhaustedError({ ...fields, reason: "request_too_large" })
    }
    return new Errors.RateLimitError({ ...fields, ...optional("limit", Wire.exceededLimit(body, headers)) })
  }
  // A safety system's rejection of the request (OpenAI `content_policy_violation`, Azure `content_filter`, as a
  // code or, in some proxies' bodies, as the type): declined content, not a malformed request.
  if (contentPolicyCodes.has(code) || contentPolicyCodes.has(type)) {
    return new Errors.RefusalError({ ...fields, shouldRetry: false, kind: "content-filter", reason: code || type })
  }
  // Before auth: a project without access to a model gets a 403 with `model_not_found`. Anthropic's
  // `not_found_error` is a model it does not serve only when its message names the model (a wrong path says
  // "Not Found").
  if (code === "model_not_found" || (type === "not_found_error" && /^model:/i.test(message))) {
    return new Errors.ModelNotFoundError(fields)
  }
  if (status === 401 || status === 403 || type === "authentication_error" || type === "permission_error") {
    return new Errors.AuthError(fields)
  }
  if (status === 408 || status === 504 || type === "timeout_error") {
    return new Errors.TimeoutError(fields)
  }
  // A 409 is a conflict on the provider's side (a lock that timed out): the official SDKs retry it, as a 5xx.
  if (
    (status !== undefined && (status >= 500 || status === 409)) || type === "api_error" ||
    type === "server_error" || type === "overloaded_error"
  ) {
    return new Errors.ServerError(fields)
  }
  if ((status !== undefined && status >= 400) || type === "invalid_request_error") {
    return new Errors.InvalidRequestError(fields)
  }
  // An error event with a type we do not know, or an odd status: a retry may help.
  return new Errors.ServerError(fields)
}
