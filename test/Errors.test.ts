import { describe, expect, it } from "@effect/vitest"
import * as Errors from "../src/Errors.js"
import { httpError, transportError } from "./utils/FakeModel.js"

const at = { provider: "openai" as const, model: "gpt-4.1", nowMillis: Date.parse("2025-08-21T12:40:00Z") }
const anthropic = { ...at, provider: "anthropic" as const, model: "claude-sonnet-4-5" }

describe("Errors.classify", () => {
  it("reads a transient OpenAI 429 with retry-after-ms", () => {
    const error = Errors.classify(
      httpError(429, {
        error: {
          message: "Rate limit reached for gpt-4.1 on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms.",
          type: "tokens",
          param: null,
          code: "rate_limit_exceeded"
        }
      }, { "retry-after-ms": "644", "x-request-id": "req_1" }),
      at
    )
    expect(error._tag).toBe("RateLimitError")
    expect(error._tag === "RateLimitError" && [error.retryAfterMs, error.requestId, error.status]).toEqual([644, "req_1", 429])
  })

  it("tells a request too large for the TPM budget from a transient 429", () => {
    const error = Errors.classify(
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
    const error = Errors.classify(
      httpError(429, { error: { message: "You exceeded your current quota", type: "insufficient_quota", param: null, code: "insufficient_quota" } }),
      at
    )
    expect(error._tag === "QuotaExhaustedError" && error.reason).toBe("insufficient_quota")
  })

  it("reads Anthropic's spend limit as quota exhausted", () => {
    const error = Errors.classify(
      httpError(429, { type: "error", error: { type: "rate_limit_error", message: "spend limit", details: { error_code: "enforced_spend_limit_reached" } } }),
      anthropic
    )
    expect(error._tag === "QuotaExhaustedError" && error.reason).toBe("spend_limit")
  })

  it("reads context_length_exceeded and the sizes in its message", () => {
    const error = Errors.classify(
      httpError(400, {
        error: {
          message: "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.",
          type: "invalid_request_error",
          param: "input",
          code: "context_length_exceeded"
        }
      }),
      at
    )
    expect(error._tag === "ContextTooLongError" && [error.promptTokens, error.maxContextTokens]).toEqual([130_512, 128_000])
  })

  it("reads Anthropic's 'prompt is too long' 400", () => {
    const error = Errors.classify(
      httpError(400, { type: "error", error: { type: "invalid_request_error", message: "prompt is too long: 208656 tokens > 200000 maximum" } }),
      anthropic
    )
    expect(error._tag === "ContextTooLongError" && [error.promptTokens, error.maxContextTokens]).toEqual([208_656, 200_000])
  })

  it("reads a 401 as an auth error and keeps the key out of the detail", () => {
    const error = Errors.classify(
      httpError(401, { error: { message: "Incorrect API key provided: sk-proj-abcdef123456.", type: "invalid_request_error", param: null, code: "invalid_api_key" } }),
      at
    )
    expect(error._tag).toBe("AuthError")
    expect(JSON.stringify(error)).not.toContain("abcdef123456")
  })

  it("reads Anthropic's 529 overloaded as a server error that should be retried", () => {
    const error = Errors.classify(
      httpError(529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, { "x-should-retry": "true", "request-id": "req_a" }),
      anthropic
    )
    expect(error._tag === "ServerError" && [error.shouldRetry, error.requestId]).toEqual([true, "req_a"])
  })

  it("reads retry-after as an HTTP date", () => {
    const error = Errors.classify(
      httpError(429, { type: "error", error: { type: "rate_limit_error", message: "slow down" } }, { "retry-after": "Thu, 21 Aug 2025 12:40:30 GMT" }),
      anthropic
    )
    expect(error._tag === "RateLimitError" && error.retryAfterMs).toBe(30_000)
  })

  it("reads 504 as a timeout and a transport failure as a network error", () => {
    expect(Errors.classify(httpError(504, "Gateway Timeout"), at)._tag).toBe("TimeoutError")
    expect(Errors.classify(transportError(), at)._tag).toBe("NetworkError")
  })

  it("classifies an error event that arrived mid-stream by its type", () => {
    expect(Errors.classifyStreamError({ type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, anthropic)._tag)
      .toBe("ServerError")
    expect(Errors.classifyStreamError({ type: "error", code: "rate_limit_exceeded", message: "slow" }, at)._tag)
      .toBe("RateLimitError")
  })
})

describe("Errors for people", () => {
  it("gives the seed's error type and sentence", () => {
    const error = new Errors.RateLimitError({ provider: "openai", model: "gpt-4.1", detail: "slow down" })
    expect(Errors.errorType(error)).toBe("rate_limit")
    expect(Errors.userMessage(error)).toBe("We're experiencing high demand. Your request will retry automatically in a moment...")
    expect(Errors.isTransient(error)).toBe(true)
    expect(Errors.isTransient(new Errors.AuthError({ provider: "openai", model: "gpt-4.1", detail: "bad key" }))).toBe(false)
  })
})
