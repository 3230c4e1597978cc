import { describe, expect, it } from "@effect/vitest"
import * as Schema from "effect/Schema"
import * as Errors from "../src/Errors.js"
import * as Classify from "../src/internal/classify.js"
import { httpError, transportError } from "./utils/FakeModel.js"

const at = { provider: "openai" as const, model: "gpt-4.1", nowMillis: Date.parse("2025-08-21T12:40:00Z") }
const anthropic = { ...at, provider: "anthropic" as const, model: "claude-sonnet-4-5" }

describe("Classify.classify", () => {
  it("reads a transient OpenAI 429 with retry-after-ms", () => {
    const error = Classify.classify(
      httpError(429, {
        error: {
          message:
            "Rate limit reached for gpt-4.1 on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms.",
          type: "tokens",
          param: null,
          code: "rate_limit_exceeded"
        }
      }, { "retry-after-ms": "644", "x-request-id": "req_1" }),
      at
    )
    expect(error._tag).toBe("RateLimitError")
    expect(error._tag === "RateLimitError" && [error.retryAfterMs, error.requestId, error.status]).toEqual([
      644,
      "req_1",
      429
    ])
  })

  it("reads which per-minute limit a 429 reached, as each provider names it", () => {
    const limitOf = (error: ReturnType<typeof Classify.classify>) =>
      error._tag === "RateLimitError" ? error.limit : "not a 429"
    const openAi = (type: string, on: string) =>
      Classify.classify(
        httpError(429, {
          error: {
            message: `Rate limit reached for gpt-4.1 in organization org-1 on ${on}: Limit 500, Used 500, Requested 1.`,
            type,
            param: null,
            code: "rate_limit_exceeded"
          }
        }),
        at
      )
    expect(limitOf(openAi("tokens", "tokens per min (TPM)"))).toBe("tokens")
    expect(limitOf(openAi("requests", "requests per min (RPM)"))).toBe("requests")
    // A daily limit is none of the per-minute budgets the limiter keeps, though OpenAI gives it the same types.
    expect(limitOf(openAi("tokens", "tokens per day (TPD)"))).toBeUndefined()
    expect(limitOf(openAi("requests", "requests per day (RPD)"))).toBeUndefined()
    const claude = (message: string, headers: Record<string, string> = {}) =>
      Classify.classify(
        httpError(429, { type: "error", error: { type: "rate_limit_error", message } }, headers),
        anthropic
      )
    const exceed = (what: string) =>
      `This request would exceed the rate limit for your organization (0dccdde6) of ${what} per minute. ` +
      "For details, refer to: https://docs.claude.com/en/api/rate-limits."
    expect(limitOf(claude(exceed("20,000 input tokens")))).toBe("input-tokens")
    expect(limitOf(claude(exceed("8,000 output tokens")))).toBe("output-tokens")
    expect(limitOf(claude(exceed("50 requests")))).toBe("requests")
    expect(
      limitOf(claude("This request would exceed your organization's rate limit of 30,000 input tokens per minute"))
    )
      .toBe("input-tokens")
    // No limit in the words: the one bucket the headers report empty; none when several are, or none is.
    const remaining = (requests: string, input: string, output: string) => ({
      "anthropic-ratelimit-requests-remaining": requests,
      "anthropic-ratelimit-input-tokens-remaining": input,
      "anthropic-ratelimit-output-tokens-remaining": output
    })
    expect(limitOf(claude("Rate limited", remaining("12", "0", "4000")))).toBe("input-tokens")
    expect(limitOf(claude("Rate limited", remaining("0", "0", "4000")))).toBeUndefined()
    expect(limitOf(claude("Rate limited"))).toBeUndefined()
  })

  it("tells a request too large for the TPM budget from a transient 429", () => {
    const error = Classify.classify(
      httpError(429, {
        error: {
          message: "Request too large for gpt-4.1 on tokens per min (TPM): Limit 30000, Requested 31538.",
          type: "tokens",
          param: null,
          code: "rate_limit_exceeded"
        }
      }),
      at
    )
    expect(error._tag === "QuotaExhaustedError" && error.reason).toBe("request_too_large")
  })

  it("reads insufficient_quota as quota exhausted", () => {
    const error = Classify.classify(
      httpError(429, {
        error: {
          message: "You exceeded your current quota",
          type: "insufficient_quota",
          param: null,
          code: "insufficient_quota"
        }
      }),
      at
    )
    expect(error._tag === "QuotaExhaustedError" && error.reason).toBe("insufficient_quota")
  })

  it("reads Anthropic's spend limit as quota exhausted", () => {
    const error = Classify.classify(
      httpError(429, {
        type: "error",
        error: {
          type: "rate_limit_error",
          message: "spend limit",
          details: { error_code: "enforced_spend_limit_reached" }
        }
      }),
      anthropic
    )
    expect(error._tag === "QuotaExhaustedError" && error.reason).toBe("spend_limit")
  })

  it("reads context_length_exceeded and the sizes in its message", () => {
    const error = Classify.classify(
      httpError(400, {
        error: {
          message:
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.",
          type: "invalid_request_error",
          param: "input",
          code: "context_length_exceeded"
        }
      }),
      at
    )
    expect(error._tag === "ContextTooLongError" && [error.promptTokens, error.maxContextTokens]).toEqual([
      130_512,
      128_000
    ])
  })

  it("reads Anthropic's 'prompt is too long' 400", () => {
    const error = Classify.classify(
      httpError(400, {
        type: "error",
        error: { type: "invalid_request_error", message: "prompt is too long: 208656 tokens > 200000 maximum" }
      }),
      anthropic
    )
    expect(error._tag === "ContextTooLongError" && [error.promptTokens, error.maxContextTokens]).toEqual([
      208_656,
      200_000
    ])
  })

  it("reads a 401 as an auth error and keeps the key out of the detail", () => {
    const error = Classify.classify(
      httpError(401, {
        error: {
          message: "Incorrect API key provided: sk-proj-abcdef123456.",
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key"
        }
      }),
      at
    )
    expect(error._tag).toBe("AuthError")
    expect(JSON.stringify(error)).not.toContain("abcdef123456")
  })

  it("reads Anthropic's 529 overloaded as a server error that should be retried", () => {
    const error = Classify.classify(
      httpError(529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, {
        "x-should-retry": "true",
        "request-id": "req_a"
      }),
      anthropic
    )
    expect(error._tag === "ServerError" && [error.shouldRetry, error.requestId]).toEqual([true, "req_a"])
  })

  it("reads retry-after as an HTTP date", () => {
    const error = Classify.classify(
      httpError(429, { type: "error", error: { type: "rate_limit_error", message: "slow down" } }, {
        "retry-after": "Thu, 21 Aug 2025 12:40:30 GMT"
      }),
      anthropic
    )
    expect(error._tag === "RateLimitError" && error.retryAfterMs).toBe(30_000)
  })

  it("reads 504 as a timeout and a transport failure as a network error", () => {
    expect(Classify.classify(httpError(504, "Gateway Timeout"), at)._tag).toBe("TimeoutError")
    expect(Classify.classify(transportError(), at)._tag).toBe("NetworkError")
  })

  it("classifies an error event that arrived mid-stream by its type", () => {
    expect(
      Classify.classifyStreamError(
        { type: "error", error: { type: "overloaded_error", message: "Overloaded" } },
        anthropic
      )._tag
    )
      .toBe("ServerError")
    expect(Classify.classifyStreamError({ type: "error", code: "rate_limit_exceeded", message: "slow" }, at)._tag)
      .toBe("RateLimitError")
  })
})

describe("Errors for people", () => {
  it("gives the error type and the writer's sentence", () => {
    const error = new Errors.RateLimitError({ provider: "openai", model: "gpt-4.1", detail: "slow down" })
    expect(Errors.errorType(error)).toBe("rate_limit")
    // While it will be retried, and once nothing more will happen.
    expect(Errors.retryMessage(error)).toBe(
      "We're experiencing high demand. Your request will retry automatically in a moment..."
    )
    expect(Errors.userMessage(error)).toBe(
      "The AI service is handling too many requests right now. Please try again in a few minutes."
    )
    expect(Errors.userMessage(new Errors.RateLimitError({ ...error, local: true, retryAfterMs: 41_200 }))).toBe(
      "Too many plots are being generated right now. Please try again in about 42 s."
    )
    expect(new Errors.ServerError({ provider: "openai", model: "gpt-4.1", detail: "boom." }).message).toBe(
      "Server error from openai/gpt-4.1: boom. Retry later or use another model."
    )
    expect(Errors.isTransient(error)).toBe(true)
    expect(Errors.isTransient(new Errors.AuthError({ provider: "openai", model: "gpt-4.1", detail: "bad key" }))).toBe(
      false
    )
  })
})

describe("Classify.classify over every example of docs/provider-wire.md", () => {
  const oa = (type: string, code: string | null, message: string) => ({ error: { message, type, param: null, code } })
  const an = (type: string, message: string, extra: Record<string, unknown> = {}) => ({
    type: "error",
    error: { type, message, ...extra },
    request_id: "req_body"
  })
  it.each(
    [
      [
        "OpenAI 429 tokens, transient",
        "openai",
        429,
        oa(
          "tokens",
          "rate_limit_exceeded",
          "Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms."
        ),
        { "retry-after-ms": "644" },
        "RateLimitError",
        644
      ],
      [
        "OpenAI 429 requests, transient",
        "openai",
        429,
        oa("requests", "rate_limit_exceeded", "Rate limit reached for requests"),
        { "retry-after": "2" },
        "RateLimitError",
        2_000
      ],
      [
        "OpenAI 429 request too large",
        "openai",
        429,
        oa(
          "tokens",
          "rate_limit_exceeded",
          "Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 31538."
        ),
        {},
        "QuotaExhaustedError",
        undefined
      ],
      [
        "OpenAI 429 insufficient_quota",
        "openai",
        429,
        oa(
          "insufficient_quota",
          "insufficient_quota",
          "You exceeded your current quota, please check your plan and billing details."
        ),
        {},
        "QuotaExhaustedError",
        undefined
      ],
      [
        "OpenAI 429 insufficient_quota, older body",
        "openai",
        429,
        oa("insufficient_quota", null, "You exceeded your current quota"),
        {},
        "QuotaExhaustedError",
        undefined
      ],
      [
        "OpenAI 400 context_length_exceeded",
        "openai",
        400,
        oa(
          "invalid_request_error",
          "context_length_exceeded",
          "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens."
        ),
        {},
        "ContextTooLongError",
        undefined
      ],
      [
        "OpenAI 401 invalid_api_key",
        "openai",
        401,
        oa("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-abc***xyz."),
        {},
        "AuthError",
        undefined
      ],
      [
        "OpenAI 500 server_error",
        "openai",
        500,
        oa("server_error", null, "The server had an error processing your request."),
        {},
        "ServerError",
        undefined
      ],
      [
        "OpenAI reset headers (Go durations) on a 429",
        "openai",
        429,
        oa("requests", "rate_limit_exceeded", "Rate limit reached"),
        {
          "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "6m0s",
          "x-ratelimit-remaining-tokens": "100",
          "x-ratelimit-reset-tokens": "20ms"
        },
        "RateLimitError",
        360_000
      ],
      [
        "Anthropic 400 invalid_request_error",
        "anthropic",
        400,
        an("invalid_request_error", "max_tokens: Field required"),
        {},
        "InvalidRequestError",
        undefined
      ],
      [
        "Anthropic 400 prompt is too long",
        "anthropic",
        400,
        an("invalid_request_error", "prompt is too long: 208656 tokens > 200000 maximum"),
        {},
        "ContextTooLongError",
        undefined
      ],
      [
        "Anthropic 401 authentication_error",
        "anthropic",
        401,
        an("authentication_error", "invalid x-api-key"),
        {},
        "AuthError",
        undefined
      ],
      [
        "Anthropic 403 permission_error",
        "anthropic",
        403,
        an("permission_error", "Your API key does not have permission"),
        {},
        "AuthError",
        undefined
      ],
      [
        "Anthropic 404 not_found_error",
        "anthropic",
        404,
        an("not_found_error", "model: claude-x"),
        {},
        "ModelNotFoundError",
        undefined
      ],
      [
        "Anthropic 413 request_too_large",
        "anthropic",
        413,
        an("request_too_large", "Request exceeds the maximum allowed number of bytes."),
        {},
        "ContextTooLongError",
        undefined
      ],
      [
        "Anthropic 429 rate_limit_error",
        "anthropic",
        429,
        an("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
        { "retry-after": "30" },
        "RateLimitError",
        30_000
      ],
      [
        "Anthropic 429 spend limit",
        "anthropic",
        429,
        an("rate_limit_error", "You have reached your specified workspace API usage limits.", {
          details: { error_code: "enforced_spend_limit_reached" }
        }),
        {},
        "QuotaExhaustedError",
        undefined
      ],
      [
        "Anthropic reset headers (RFC 3339) on a 429",
        "anthropic",
        429,
        an("rate_limit_error", "rate limited"),
        {
          "anthropic-ratelimit-input-tokens-remaining": "0",
          "anthropic-ratelimit-input-tokens-reset": "2025-08-21T12:40:59Z",
          "anthropic-ratelimit-requests-remaining": "12",
          "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:05Z"
        },
        "RateLimitError",
        59_000
      ],
      [
        "Anthropic 500 api_error",
        "anthropic",
        500,
        an("api_error", "Internal server error"),
        {},
        "ServerError",
        undefined
      ],
      [
        "Anthropic 529 overloaded_error",
        "anthropic",
        529,
        an("overloaded_error", "Overloaded"),
        { "x-should-retry": "true" },
        "ServerError",
        undefined
      ],
      [
        "Anthropic 402 billing_error",
        "anthropic",
        402,
        an("billing_error", "Your credit balance is too low"),
        {},
        "QuotaExhaustedError",
        undefined
      ],
      [
        "Anthropic 504 timeout_error",
        "anthropic",
        504,
        an("timeout_error", "Request timed out"),
        {},
        "TimeoutError",
        undefined
      ],
      [
        "OpenAI 409 conflict, retried as the SDKs retry it",
        "openai",
        409,
        oa("invalid_request_error", null, "The request could not be completed due to a conflict."),
        {},
        "ServerError",
        undefined
      ],
      [
        "Anthropic 400 credit balance too low",
        "anthropic",
        400,
        an(
          "invalid_request_error",
          "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
        ),
        {},
        "QuotaExhaustedError",
        undefined
      ],
      [
        "Anthropic 400 usage limits reached",
        "anthropic",
        400,
        an(
          "invalid_request_error",
          "You have reached your specified API usage limits. You will regain access on 2026-04-01 at 00:00 UTC."
        ),
        {},
        "QuotaExhaustedError",
        undefined
      ],
      [
        "Anthropic 400 input and max_tokens over the window",
        "anthropic",
        400,
        an(
          "invalid_request_error",
          "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again"
        ),
        {},
        "ContextTooLongError",
        undefined
      ],
      [
        "OpenAI 400 invalid_prompt",
        "openai",
        400,
        oa(
          "invalid_request_error",
          "invalid_prompt",
          "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again with a different prompt."
        ),
        {},
        "RefusalError",
        undefined
      ]
    ] as const
  )("%s", (_, provider, status, body, headers, tag, retryAfterMs) => {
    const error = Classify.classify(httpError(status, body, headers), { ...at, provider })
    expect(error._tag).toBe(tag)
    expect("retryAfterMs" in error ? error.retryAfterMs : undefined).toBe(retryAfterMs)
    expect("status" in error ? error.status : undefined).toBe(status)
  })

  it("reads the request id from either header or the body", () => {
    expect(Classify.classify(httpError(500, {}, { "x-request-id": "req_oa" }), at)).toMatchObject({
      requestId: "req_oa"
    })
    expect(Classify.classify(httpError(500, an("api_error", "x"), { "request-id": "req_an" }), anthropic))
      .toMatchObject({
        requestId: "req_an"
      })
    expect(Classify.classify(httpError(500, an("api_error", "x")), anthropic)).toMatchObject({ requestId: "req_body" })
  })

  it("obeys x-should-retry: false", () => {
    expect(Classify.classify(httpError(500, {}, { "x-should-retry": "false" }), at)).toMatchObject({
      shouldRetry: false
    })
  })

  it("classifies both providers' mid-stream error events", () => {
    expect(
      Classify.classifyStreamError({
        type: "error",
        sequence_number: 2,
        error: { type: "server_error", code: "server_error", message: "boom", param: null }
      }, at)._tag
    )
      .toBe("ServerError")
    expect(
      Classify.classifyStreamError(
        { type: "error", error: { type: "overloaded_error", message: "Overloaded" } },
        anthropic
      )._tag
    )
      .toBe("ServerError")
    expect(
      Classify.classifyStreamError({ type: "error", error: { type: "rate_limit_error", message: "slow" } }, anthropic)
        ._tag
    )
      .toBe("RateLimitError")
    // A refusal has no status mid-stream: its type says it is the request's fault, not worth a retry.
    expect(
      Classify.classifyStreamError(
        { type: "error", error: { type: "invalid_request_error", message: "blocked" } },
        anthropic
      )._tag
    )
      .toBe("InvalidRequestError")
  })

  it("reads OpenAI's mid-stream rate limit as production sends it: nested, its wait in the message or its headers", () => {
    const nested = (extra: Record<string, unknown> = {}) => ({
      type: "error",
      sequence_number: 2,
      error: {
        type: "tokens",
        code: "rate_limit_exceeded",
        message:
          "Rate limit reached for gpt-4.1 on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 1.5s.",
        param: null,
        ...extra
      }
    })
    expect(Classify.classifyStreamError(nested(), at)).toMatchObject({ _tag: "RateLimitError", retryAfterMs: 1_500 })
    // Headers inside the error say more precisely.
    expect(Classify.classifyStreamError(nested({ headers: { "retry-after-ms": "1720" } }), at)).toMatchObject({
      _tag: "RateLimitError",
      retryAfterMs: 1_720
    })
    // The flat shape of the API reference: the event's own type says nothing, its code does.
    expect(
      Classify.classifyStreamError(
        {
          type: "error",
          sequence_number: 2,
          code: "rate_limit_exceeded",
          message: "Please try again in 644ms.",
          param: null
        },
        at
      )
    ).toMatchObject({ _tag: "RateLimitError", retryAfterMs: 644 })
    // `response.failed` carries `response.error`: a code and a message.
    expect(Classify.classifyStreamError({ code: "server_error", message: "The model failed" }, at)._tag).toBe(
      "ServerError"
    )
    // An Anthropic error type the client did not know is still classified.
    expect(
      Classify.classifyStreamError({ type: "error", error: { type: "timeout_error", message: "late" } }, anthropic)._tag
    ).toBe("TimeoutError")
  })

  it("reads a model the provider does not serve, in both dialects", () => {
    const openAi = oa(
      "invalid_request_error",
      "model_not_found",
      "The model `gpt-x` does not exist or you do not have access to it."
    )
    expect(Classify.classify(httpError(404, openAi), at)).toMatchObject({ _tag: "ModelNotFoundError", status: 404 })
    expect(Classify.classify(httpError(404, an("not_found_error", "model: claude-x")), anthropic)._tag).toBe(
      "ModelNotFoundError"
    )
    // A project without access to the model gets a 403 that names it: the model, not the key, is the problem.
    expect(Classify.classify(httpError(403, openAi), at)._tag).toBe("ModelNotFoundError")
    // A wrong path is a 404 too, but it names no model: the request is at fault.
    expect(Classify.classify(httpError(404, an("not_found_error", "Not Found")), anthropic)._tag).toBe(
      "InvalidRequestError"
    )
  })

  it("reads a safety system's rejection as a refusal, not a bad request: OpenAI's code and Azure's", () => {
    const openAi = oa(
      "invalid_request_error",
      "content_policy_violation",
      "Your request was rejected as a result of our safety system."
    )
    expect(Classify.classify(httpError(400, openAi), at)).toMatchObject({
      _tag: "RefusalError",
      status: 400,
      kind: "content-filter",
      reason: "content_policy_violation",
      shouldRetry: false
    })
    const azure = oa("invalid_request_error", "content_filter", "The response was filtered due to the prompt.")
    expect(Classify.classify(httpError(400, azure), at)).toMatchObject({
      _tag: "RefusalError",
      reason: "content_filter"
    })
    // A reasoning model's, at HTTP level and streamed as `response.failed` (before, a bad request, and a server
    // error retried three times on the model that refused).
    const flagged = "Invalid prompt: your prompt was flagged as potentially violating our usage policy."
    for (const code of ["invalid_prompt", "cyber_policy", "bio_policy"]) {
      expect(Classify.classify(httpError(400, oa("invalid_request_error", code, flagged)), at)).toMatchObject({
        _tag: "RefusalError",
        kind: "content-filter",
        reason: code
      })
      expect(Classify.classifyStreamError({ code, message: flagged }, at)).toMatchObject({
        _tag: "RefusalError",
        reason: code
      })
    }
  })

  it("reads Anthropic's account limits, sent as a plain 400, as quota exhausted, not a bad request", () => {
    const claude400 = (message: string) => httpError(400, an("invalid_request_error", message))
    expect(Classify.classify(
      claude400(
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
      ),
      anthropic
    )).toMatchObject({ _tag: "QuotaExhaustedError", reason: "insufficient_quota", status: 400 })
    expect(Classify.classify(
      claude400("You have reached your specified workspace API usage limits. You will regain access on 2026-04-01."),
      anthropic
    )).toMatchObject({ _tag: "QuotaExhaustedError", reason: "spend_limit" })
    // The input fits, but not with the output asked for: sized from the input and the window.
    expect(Classify.classify(
      claude400(
        "input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again"
      ),
      anthropic
    )).toMatchObject({ _tag: "ContextTooLongError", promptTokens: 178_959, maxContextTokens: 200_000 })
  })

  it("reads a gateway's too_many_requests as a rate limit, whatever its status", () => {
    const body = { error: { message: "Too many requests", type: "too_many_requests", code: "too_many_requests" } }
    expect(Classify.classify(httpError(400, body), at)._tag).toBe("RateLimitError")
  })

  it("takes a wait from the message when no header asks for one, never over a header", () => {
    const body = oa("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 6m0s.")
    expect(Classify.classify(httpError(429, body), at)).toMatchObject({ retryAfterMs: 360_000 })
    expect(Classify.classify(httpError(429, body, { "retry-after": "2" }), at)).toMatchObject({ retryAfterMs: 2_000 })
  })
})

describe("Errors as schemas", () => {
  it("tells the engine's errors apart from anything else, and provider errors from the engine's own", () => {
    const rateLimit = new Errors.RateLimitError({ provider: "openai", model: "gpt-4.1", detail: "slow down" })
    const notFound = new Errors.ProjectNotFoundError({ projectId: "x" })
    const notConfigured = new Errors.ProviderNotConfiguredError({ provider: "anthropic" })
    expect([rateLimit, notFound, notConfigured].map(Errors.isGenerationError)).toEqual([true, true, true])
    expect([rateLimit, notFound, notConfigured].map(Errors.isProviderError)).toEqual([true, false, false])
    expect(Errors.isGenerationError(new Error("boom"))).toBe(false)
    expect(Errors.isGenerationError({ _tag: "RateLimitError" })).toBe(false)
  })

  it("encodes and decodes every error through GenerationError", () => {
    const error = new Errors.QuotaExhaustedError({
      provider: "openai",
      model: "gpt-4.1",
      status: 429,
      reason: "insufficient_quota",
      detail: "You exceeded your current quota"
    })
    const encoded = Schema.encodeSync(Errors.GenerationError)(error)
    expect(encoded).toMatchObject({ _tag: "QuotaExhaustedError", reason: "insufficient_quota", status: 429 })
    const decoded = Schema.decodeUnknownSync(Errors.GenerationError)(encoded)
    expect(decoded).toBeInstanceOf(Errors.QuotaExhaustedError)
    expect(Errors.errorType(decoded)).toBe("quota_exhausted")
  })
})
