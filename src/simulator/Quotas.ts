/**
 * The simulator's quotas, per API key and model: OpenAI style (requests and tokens per minute, prompt plus
 * max output counted at admission) and Anthropic style (requests, input tokens and output tokens per minute,
 * output estimated from `max_tokens` at the start and corrected at the end). Buckets replenish continuously;
 * every answer carries the provider's real rate-limit headers, and a request over the quota gets a 429 with
 * a retry-after.
 *
 * @since 0.1.0
 */
import * as Sweep from "../internal/sweep.js"
import type * as Core from "./Core.js"

/**
 * @since 0.1.0
 */
export interface OpenAiQuota {
  readonly requestsPerMinute: number
  readonly tokensPerMinute: number
}

/**
 * @since 0.1.0
 */
export interface AnthropicQuota {
  readonly requestsPerMinute: number
  readonly inputTokensPerMinute: number
  readonly outputTokensPerMinute: number
}

/**
 * The quotas to enforce; a dialect without one is unlimited.
 *
 * @since 0.1.0
 */
export interface QuotaOptions {
  readonly openai?: OpenAiQuota | undefined
  readonly anthropic?: AnthropicQuota | undefined
  /**
   * `false`: no `x-ratelimit-*` or `anthropic-ratelimit-*` header on any answer, as behind a proxy that strips
   * them; a 429 still carries its retry-after (default `true`).
   */
  readonly rateLimitHeaders?: boolean | undefined
}

interface Bucket {
  readonly capacity: number
  level: number
  at: number
}

/** Refills a bucket continuously up to its capacity. */
const refill = (bucket: Bucket, now: number) => {
  bucket.level = Math.min(bucket.capacity, bucket.level + ((now - bucket.at) * bucket.capacity) / 60_000)
  bucket.at = now
}

/** Milliseconds until a bucket holds `tokens`. */
const waitFor = (bucket: Bucket, tokens: number) =>
  bucket.level >= tokens ? 0 : Math.ceil(((tokens - bucket.level) * 60_000) / bucket.capacity)

/** Milliseconds until a bucket is full again. */
const untilFull = (bucket: Bucket) => Math.ceil(((bucket.capacity - bucket.level) * 60_000) / bucket.capacity)

/** A Go duration as OpenAI writes resets: `1s`, `6m0s`, `20ms`. */
export const goDuration = (millis: number): string => {
  if (millis < 1_000) return `${Math.max(0, Math.round(millis))}ms`
  const totalSeconds = millis / 1_000
  const minutes = Math.floor(totalSeconds / 60)
  const seconds = totalSeconds - minutes * 60
  const secondsText = `${Number(seconds.toFixed(3))}s`
  return minutes > 0 ? `${minutes}m${secondsText}` : secondsText
}

const rfc3339 = (millis: number) => new Date(millis).toISOString().replace(/\.\d{3}Z$/, "Z")

/**
 * What the quota decided for one request.
 *
 * @since 0.1.0
 */
export type Admission =
  | {
    readonly _tag: "Admitted"
    readonly headers: Record<string, string>
    readonly settle: (outputTokens: number, now: number) => void
  }
  | {
    readonly _tag: "Limited"
    readonly headers: Record<string, string>
    readonly retryAfterMs: number
    /** The bucket that refused, and the numbers OpenAI puts in its message. */
    readonly bucket: "requests" | "tokens" | "input tokens" | "output tokens"
    readonly limit: number
    readonly used: number
    readonly requested: number
  }

/**
 * Quota state of one simulator.
 *
 * @since 0.1.0
 */
export interface Quotas {
  readonly admit: (
    dialect: Core.Dialect,
    apiKey: string,
    model: string,
    usage: { readonly inputTokens: number; readonly maxOutputTokens: number },
    now: number
  ) => Admission
}

/** The bucket of a key, made full when first asked for (or when its capacity changed), refilled to `now`. */
type BucketOf = (key: string, capacity: number, now: number) => Bucket

/** OpenAI's accounting: a request and its prompt plus max output, counted at admission and kept. */
const admitOpenAi = (
  bucket: BucketOf,
  quota: OpenAiQuota,
  key: string,
  usage: { inputTokens: number; maxOutputTokens: number },
  now: number
): Admission => {
  const requests = bucket(`${key}:rpm`, quota.requestsPerMinute, now)
  const tokens = bucket(`${key}:tpm`, quota.tokensPerMinute, now)
  const wanted = usage.inputTokens + usage.maxOutputTokens
  const headers = () => ({
    "x-ratelimit-limit-requests": String(quota.requestsPerMinute),
    "x-ratelimit-limit-tokens": String(quota.tokensPerMinute),
    "x-ratelimit-remaining-requests": String(Math.floor(requests.level)),
    "x-ratelimit-remaining-tokens": String(Math.floor(tokens.level)),
    "x-ratelimit-reset-requests": goDuration(untilFull(requests)),
    "x-ratelimit-reset-tokens": goDuration(untilFull(tokens))
  })
  const requestWait = waitFor(requests, 1)
  const tokenWait = waitFor(tokens, wanted)
  if (requestWait > 0 || tokenWait > 0) {
    const byTokens = tokenWait >= requestWait
    const retryAfterMs = Math.max(requestWait, tokenWait)
    return {
      _tag: "Limited",
      headers: {
        ...headers(),
        "retry-after-ms": String(retryAfterMs),
        "retry-after": String(Math.ceil(retryAfterMs / 1_000))
      },
      retryAfterMs,
      bucket: byTokens ? "tokens" : "requests",
      limit: byTokens ? quota.tokensPerMinute : quota.requestsPerMinute,
      used: Math.ceil(byTokens ? quota.tokensPerMinute - tokens.level : quota.requestsPerMinute - requests.level),
      requested: byTokens ? wanted : 1
    }
  }
  requests.level -= 1
  tokens.level -= wanted
  return {
    _tag: "Admitted",
    headers: headers(),
    // OpenAI keeps what was counted at admission.
    settle: () => undefined
  }
}

/** Anthropic's accounting: requests, input and output apart; the output corrected to what was written. */
const admitAnthropic = (
  bucket: BucketOf,
  quota: AnthropicQuota,
  key: string,
  usage: { inputTokens: number; maxOutputTokens: number },
  now: number
): Admission => {
  const requests = bucket(`${key}:rpm`, quota.requestsPerMinute, now)
  const input = bucket(`${key}:itpm`, quota.inputTokensPerMinute, now)
  const output = bucket(`${key}:otpm`, quota.outputTokensPerMinute, now)
  const thousands = (n: number) => String(Math.max(0, Math.round(n / 1_000) * 1_000))
  const headers = () => ({
    "anthropic-ratelimit-requests-limit": String(quota.requestsPerMinute),
    "anthropic-ratelimit-requests-remaining": String(Math.max(0, Math.floor(requests.level))),
    "anthropic-ratelimit-requests-reset": rfc3339(now + untilFull(requests)),
    "anthropic-ratelimit-input-tokens-limit": String(quota.inputTokensPerMinute),
    "anthropic-ratelimit-input-tokens-remaining": thousands(input.level),
    "anthropic-ratelimit-input-tokens-reset": rfc3339(now + untilFull(input)),
    "anthropic-ratelimit-output-tokens-limit": String(quota.outputTokensPerMinute),
    "anthropic-ratelimit-output-tokens-remaining": thousands(output.level),
    "anthropic-ratelimit-output-tokens-reset": rfc3339(now + untilFull(output))
  })
  const waits = [
    ["requests", waitFor(requests, 1), quota.requestsPerMinute, requests, 1],
    ["input tokens", waitFor(input, usage.inputTokens), quota.inputTokensPerMinute, input, usage.inputTokens],
    [
      "output tokens",
      waitFor(output, usage.maxOutputTokens),
      quota.outputTokensPerMinute,
      output,
      usage.maxOutputTokens
    ]
  ] as const
  const worst = [...waits].sort((a, b) => b[1] - a[1])[0]!
  if (worst[1] > 0) {
    return {
      _tag: "Limited",
      headers: { ...headers(), "retry-after": String(Math.ceil(worst[1] / 1_000)) },
      retryAfterMs: Math.ceil(worst[1] / 1_000) * 1_000,
      bucket: worst[0],
      limit: worst[2],
      used: Math.ceil(worst[2] - worst[3].level),
      requested: worst[4]
    }
  }
  requests.level -= 1
  input.level -= usage.inputTokens
  output.level -= usage.maxOutputTokens
  return {
    _tag: "Admitted",
    headers: headers(),
    // Anthropic corrects the output estimate with what was really written.
    settle: (outputTokens, at) => {
      refill(output, at)
      output.level = Math.min(output.capacity, output.level + usage.maxOutputTokens - outputTokens)
    }
  }
}

const unlimited: Admission = { _tag: "Admitted", headers: {}, settle: () => undefined }

/** The retry headers a 429 keeps when the rate-limit headers are stripped. */
const retryHeaders = ["retry-after", "retry-after-ms"]

const withoutRateLimitHeaders = (admission: Admission): Admission => ({
  ...admission,
  headers: Object.fromEntries(Object.entries(admission.headers).filter(([name]) => retryHeaders.includes(name)))
})

/**
 * Makes the quota state.
 *
 * @since 0.1.0
 */
export const make = (options: QuotaOptions): Quotas => {
  const buckets = new Map<string, Bucket>()
  // A bucket full again is as a new one: those go when the keys pile up (a client may name a new model per request).
  const sweepBuckets = Sweep.make(buckets, 4_096)
  const bucket = (key: string, capacity: number, now: number): Bucket => {
    let b = buckets.get(key)
    if (b === undefined || b.capacity !== capacity) {
      if (b === undefined) sweepBuckets((held) => untilFull(held) <= now - held.at)
      b = { capacity, level: capacity, at: now }
      buckets.set(key, b)
    }
    refill(b, now)
    return b
  }

  return {
    admit: (dialect, apiKey, model, usage, now) => {
      const key = `${apiKey}:${model}`
      const admission = dialect === "openai"
        ? options.openai === undefined
          ? unlimited
          : admitOpenAi(bucket, options.openai, key, usage, now)
        : options.anthropic === undefined
        ? unlimited
        : admitAnthropic(bucket, options.anthropic, key, usage, now)
      return options.rateLimitHeaders === false ? withoutRateLimitHeaders(admission) : admission
    }
  }
}
