/**
 * The simulator's faults: every failure the engine classifies, scripted per API key (in order: 429, 429, ok) or
 * drawn at random rates from a seeded Content.generator, plus latency. The wire modules render each fault with the
 * provider's real status, body and headers.
 *
 * @since 0.1.0
 */
import * as Content from "./Content.js"

/**
 * Every fault the simulator can produce.
 *
 * @since 0.1.0
 */
export type FaultKind =
  /** 429 that passes with time, with retry headers. */
  | "rate_limit"
  /** OpenAI 429 `insufficient_quota`, Anthropic 400 "credit balance is too low": waiting cannot help. */
  | "insufficient_quota"
  /** OpenAI 429 "Request too large" (requested > limit) or Anthropic 413. */
  | "request_too_large"
  | "server_error"
  | "bad_gateway"
  | "unavailable"
  /** 529 overloaded, with `x-should-retry: true`. */
  | "overloaded"
  /** 504 from the gateway. */
  | "gateway_timeout"
  | "auth"
  | "invalid_request"
  /** The provider's context-length error. */
  | "context_length"
  /** No answer at all until the client gives up. */
  | "hang"
  /**
   * A stream that goes silent: half of it, then nothing (the connection open) until the client gives up or the
   * hang ends. Not streamed, a hang.
   */
  | "stall"
  /** The connection is destroyed without an answer. */
  | "reset"
  /** 200 with a body that is not valid JSON (or SSE data that is not). */
  | "malformed_json"
  /** SSE that stops before the response completes. */
  | "truncated_sse"
  /** SSE with the whole answer but without its last event (`response.completed`, `message_stop`). */
  | "missing_terminator"
  /** Streamed: the response's first events, then nothing for the hang, then the rest. Not streamed: a late answer. */
  | "slow_first_token"
  /** An error event after HTTP 200, mid-stream (OpenAI: its fields nested under `error`, as production sends it). */
  | "stream_error"
  /** A rate limit mid-stream (OpenAI: nested, "Please try again in 1.5s"); a 429 when not streamed. */
  | "stream_rate_limit"
  /**
   * OpenAI's error event in the flat shape its API reference shows; Anthropic's `timeout_error` event (a type its
   * client's schema did not list); a 500 or a 504 when not streamed.
   */
  | "stream_error_flat"
  /** OpenAI's `response.failed` with `response.error`; Anthropic's `api_error` event. */
  | "response_failed"
  /** The answer stops at its output limit midway: a tool call's JSON cut off (status incomplete, `max_tokens`). */
  | "cut_off"

/**
 * Every fault kind, for parsing and listing.
 *
 * @since 0.1.0
 */
export const faultKinds: ReadonlyArray<FaultKind> = [
  "rate_limit",
  "insufficient_quota",
  "request_too_large",
  "server_error",
  "bad_gateway",
  "unavailable",
  "overloaded",
  "gateway_timeout",
  "auth",
  "invalid_request",
  "context_length",
  "hang",
  "stall",
  "reset",
  "malformed_json",
  "truncated_sse",
  "missing_terminator",
  "slow_first_token",
  "stream_error",
  "stream_rate_limit",
  "stream_error_flat",
  "response_failed",
  "cut_off"
]

/**
 * A fault with its details.
 *
 * @since 0.1.0
 */
export interface Fault {
  readonly kind: FaultKind
  /** Sent as `retry-after-ms`. */
  readonly retryAfterMs?: number | undefined
  /** Sent as `retry-after`: seconds or an HTTP date. */
  readonly retryAfter?: string | undefined
  /** For a quota's 429: the bucket and the numbers OpenAI puts in its message. */
  readonly quota?: {
    readonly bucket: "requests" | "tokens" | "input tokens" | "output tokens"
    readonly limit: number
    readonly used: number
    readonly requested: number
  } | undefined
  /** Extra headers (a quota's rate-limit headers). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * One scripted answer: a fault, or `"ok"` for a normal reply.
 *
 * @since 0.1.0
 */
export type ScriptStep = Fault | FaultKind | "ok"

/**
 * How long a hang lasts before the simulator closes the connection, unless the faults say otherwise: longer than any
 * client waits.
 *
 * @since 0.1.0
 */
export const defaultHangMs = 600_000

/**
 * Random fault rates (0-1 each, summing to at most 1) and latency.
 *
 * @since 0.1.0
 */
export interface RandomFaults {
  readonly rates?: Partial<Record<FaultKind, number>> | undefined
  /** Rates for the requests made with a key, in place of `rates` (a deployment of its own that fails its own way). */
  readonly ratesByKey?: Readonly<Record<string, Partial<Record<FaultKind, number>>>> | undefined
  /** Latency added to every answer, in milliseconds (on Effect's `Clock`). */
  readonly latencyMs?: number | undefined
  /** How long a hang lasts before the simulator closes the connection (default `defaultHangMs`, 10 minutes). */
  readonly hangMs?: number | undefined
  /** The retry-after of random 429s, in milliseconds (default 1,000). */
  readonly rateLimitRetryAfterMs?: number | undefined
}

/**
 * The chaos mix of the reliability soak and the faults benchmark: 10 % rate limits, 5 % server errors, 3 %
 * overloaded, 2 % each of hangs, resets, malformed JSON and error events mid-stream (26 % in all).
 *
 * @since 0.1.0
 */
export const chaosMix: Readonly<Partial<Record<FaultKind, number>>> = {
  rate_limit: 0.10,
  server_error: 0.05,
  overloaded: 0.03,
  hang: 0.02,
  reset: 0.02,
  malformed_json: 0.02,
  stream_error: 0.02
}

/**
 * Normalizes a script step.
 *
 * @since 0.1.0
 */
export const toFault = (step: ScriptStep): Fault | undefined =>
  step === "ok" ? undefined : typeof step === "string" ? { kind: step } : step

/**
 * Scripts per API key and random rates, drawn in order; a key's script runs out into the random rates.
 *
 * @since 0.1.0
 */
export interface FaultPlan {
  /** The next fault for a request made with this key, or `undefined` for a normal reply. */
  readonly next: (apiKey: string) => Fault | undefined
  readonly script: (apiKey: string, steps: ReadonlyArray<ScriptStep>) => void
  readonly setRandom: (random: RandomFaults) => void
  readonly random: () => RandomFaults
}

/**
 * A plan seeded for reproducible random faults.
 *
 * @since 0.1.0
 */
export const makePlan = (seed: number, random: RandomFaults = {}): FaultPlan => {
  const scripts = new Map<string, Array<ScriptStep>>()
  let settings = random
  // Reproducible draws for a given seed and order of requests.
  const draw = Content.generator(Content.hash("faults", seed))
  return {
    next: (apiKey) => {
      const script = scripts.get(apiKey)
      if (script !== undefined && script.length > 0) return toFault(script.shift()!)
      const rates = settings.ratesByKey?.[apiKey] ?? settings.rates
      if (rates === undefined) return undefined
      let roll = draw()
      for (const [kind, rate] of Object.entries(rates) as Array<[FaultKind, number]>) {
        if (roll < rate) {
          return kind === "rate_limit" ? { kind, retryAfterMs: settings.rateLimitRetryAfterMs ?? 1_000 } : { kind }
        }
        roll -= rate
      }
      return undefined
    },
    script: (apiKey, steps) => {
      scripts.set(apiKey, [...steps])
    },
    setRandom: (next) => {
      settings = next
    },
    random: () => settings
  }
}

/**
 * The retry headers of a fault.
 *
 * @since 0.1.0
 */
export const retryHeaders = (fault: Fault): Record<string, string> => ({
  ...fault.headers,
  ...(fault.retryAfterMs === undefined ? {} : { "retry-after-ms": String(fault.retryAfterMs) }),
  ...(fault.retryAfter === undefined ? {} : { "retry-after": fault.retryAfter })
})
