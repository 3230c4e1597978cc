/**
 * Reading what the providers send: error bodies, retry headers and rate-limit reset times
 * (`docs/provider-wire.md` lists the shapes and their sources).
 * Pure functions over plain values, shared by the error classifier and the rate limiter.
 */
import { globalValue } from "effect/GlobalValue"
import type * as Errors from "../Errors.js"

/** Response headers as the HTTP client records them: lower-case names. */
export type Headers = Readonly<Record<string, string | undefined>>

/** The fields of a provider error body that classification reads, from either dialect. */
export interface ProviderErrorBody {
  readonly type?: string | undefined
  readonly code?: string | undefined
  readonly message?: string | undefined
  readonly detailsErrorCode?: string | undefined
  readonly requestId?: string | undefined
  /** Headers a mid-stream error carries inside its body (OpenAI puts a 429's rate-limit headers there). */
  readonly headers?: Headers | undefined
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const stringField = (record: Record<string, unknown>, key: string): string | undefined =>
  typeof record[key] === "string" ? record[key] : undefined

/**
 * Parses a provider error body: OpenAI `{"error":{type,code,message}}`, Anthropic
 * `{"type":"error","error":{type,message,details},"request_id"}`, or an SSE error event of either. The body
 * may arrive as an object, as JSON text, or as JSON text wrapped in a JSON string (how `AiError` records it).
 */
export const parseErrorBody = (body: unknown): ProviderErrorBody => {
  let value: unknown = body
  for (let depth = 0; depth < 2 && typeof value === "string"; depth++) {
    try {
      value = JSON.parse(value)
    } catch {
      return {}
    }
  }
  if (!isRecord(value)) return {}
  const nested = isRecord(value.error)
  const error = nested ? value.error as Record<string, unknown> : value
  const details = isRecord(error.details) ? error.details : undefined
  const headers = isRecord(error.headers) ? stringRecord(error.headers) : undefined
  return {
    // An event in the flat shape has the event's own type ("error"), which says nothing about the failure.
    type: nested || value.type !== "error" ? stringField(error, "type") : undefined,
    code: stringField(error, "code"),
    message: stringField(error, "message"),
    detailsErrorCode: details ? stringField(details, "error_code") : undefined,
    requestId: stringField(value, "request_id"),
    headers
  }
}

const stringRecord = (record: Record<string, unknown>): Headers =>
  Object.fromEntries(
    Object.entries(record).flatMap(([key, value]) =>
      typeof value === "string"
        ? [[key.toLowerCase(), value]]
        : typeof value === "number"
        ? [[key.toLowerCase(), String(value)]]
        : []
    )
  )

/**
 * The wait a provider's message asks for, when no header does: OpenAI's rate-limit messages end with "Please try
 * again in 1.5s" (or "644ms", "6m0s"), in the same Go durations as its reset headers.
 */
export const retryAfterInMessage = (message: string): number | undefined => {
  const match = /try again in ((?:\d+(?:\.\d+)?(?:ms|us|µs|ns|h|m|s))+)/i.exec(message)
  return match === null ? undefined : parseGoDuration(match[1]!)
}

/**
 * Parses a Go duration as OpenAI writes reset times (`1s`, `6m0s`, `20ms`, `1h2m3.5s`) into milliseconds.
 */
export const parseGoDuration = (text: string): number | undefined => {
  const pattern = /(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/g
  let total = 0
  let consumed = 0
  for (const match of text.trim().matchAll(pattern)) {
    if (match.index !== consumed) return undefined
    consumed += match[0].length
    const value = Number(match[1])
    switch (match[2]) {
      case "h":
        total += value * 3_600_000
        break
      case "m":
        total += value * 60_000
        break
      case "s":
        total += value * 1_000
        break
      case "ms":
        total += value
        break
      case "us":
      case "µs":
        total += value / 1_000
        break
      case "ns":
        total += value / 1_000_000
        break
    }
  }
  return consumed > 0 && consumed === text.trim().length ? total : undefined
}

const nonNegative = (n: number): number => Math.max(0, n)

/**
 * How long the provider asked us to wait, in milliseconds: `retry-after-ms`, then `retry-after` (seconds or
 * an HTTP date), then the rate-limit reset headers of either provider. `undefined` when it said nothing.
 */
export const retryAfterMillis = (headers: Headers, nowMillis: number): number | undefined => {
  const ms = headers["retry-after-ms"]
  if (ms !== undefined && ms.trim() !== "" && Number.isFinite(Number(ms))) return nonNegative(Number(ms))

  const after = headers["retry-after"]
  if (after !== undefined && after.trim() !== "") {
    const seconds = Number(after)
    if (Number.isFinite(seconds)) return nonNegative(seconds * 1_000)
    const date = Date.parse(after)
    if (Number.isFinite(date)) return nonNegative(date - nowMillis)
  }

  return exhaustedBucketResetMillis(headers, nowMillis)
}

const openAiBuckets = ["requests", "tokens"] as const
const anthropicBuckets = ["requests", "tokens", "input-tokens", "output-tokens"] as const

/**
 * When every bucket the provider reports as empty (`remaining` 0) is usable again: OpenAI's resets are
 * relative Go durations, Anthropic's absolute RFC 3339 times. `undefined` when no bucket is empty.
 */
export const exhaustedBucketResetMillis = (headers: Headers, nowMillis: number): number | undefined => {
  const waits: Array<number> = []
  for (const bucket of openAiBuckets) {
    const reset = headers[`x-ratelimit-reset-${bucket}`]
    if (headers[`x-ratelimit-remaining-${bucket}`]?.trim() === "0" && reset !== undefined) {
      const wait = parseGoDuration(reset)
      if (wait !== undefined) waits.push(wait)
    }
  }
  for (const bucket of anthropicBuckets) {
    const reset = headers[`anthropic-ratelimit-${bucket}-reset`]
    if (headers[`anthropic-ratelimit-${bucket}-remaining`]?.trim() === "0" && reset !== undefined) {
      const at = Date.parse(reset)
      if (Number.isFinite(at)) waits.push(nonNegative(at - nowMillis))
    }
  }
  return waits.length > 0 ? Math.max(...waits) : undefined
}

/** `x-should-retry: true|false`, which the official SDKs obey over their own table. */
export const shouldRetryHeader = (headers: Headers): boolean | undefined => {
  const value = headers["x-should-retry"]?.trim().toLowerCase()
  return value === "true" ? true : value === "false" ? false : undefined
}

/** The provider's request id: OpenAI's `x-request-id` or Anthropic's `request-id`. */
export const requestIdOf = (headers: Headers): string | undefined => headers["x-request-id"] ?? headers["request-id"]

/** Parses "Limit 30000, Requested 31538" out of OpenAI's rate-limit messages. */
export const limitAndRequested = (
  message: string
): { readonly limit: number; readonly requested: number } | undefined => {
  const limit = /Limit (\d+)/i.exec(message)
  const requested = /Requested (\d+)/i.exec(message)
  return limit && requested ? { limit: Number(limit[1]), requested: Number(requested[1]) } : undefined
}

/**
 * A 429's per-minute limit named in its message: OpenAI's "on tokens per min (TPM)", Anthropic's "of 30,000 input
 * tokens per minute".
 */
const limitInMessage = /\b(input tokens|output tokens|requests|tokens) per min(?:ute)?\b/i

/** A limit over another window than a minute: OpenAI's "on tokens per day (TPD)", "requests per day (RPD)". */
const otherWindow = /\bper (?:day|hour)\b|\b(?:TPD|RPD)\b/i

const limitKinds: Readonly<Record<string, Errors.RateLimitKind>> = {
  requests: "requests",
  tokens: "tokens",
  "input tokens": "input-tokens",
  "output tokens": "output-tokens",
  rpm: "requests",
  tpm: "tokens",
  itpm: "input-tokens",
  otpm: "output-tokens"
}

/**
 * Which per-minute limit a 429 says was reached: OpenAI's error `type` (`requests`, `tokens`), else the limit its
 * message names (both providers name it), else the one bucket its rate-limit headers report empty. `undefined`
 * for a daily limit (none of the per-minute budgets), or when none says (a proxy's bare 429): the limiter then treats
 * every limit as reached.
 */
export const exceededLimit = (
  body: { readonly type?: string | undefined; readonly message?: string | undefined },
  headers: Headers
): Errors.RateLimitKind | undefined => {
  // OpenAI's daily limits come with the same types as its per-minute ones: only the message tells them apart.
  if (otherWindow.test(body.message ?? "")) return undefined
  if (body.type === "requests" || body.type === "tokens") return body.type
  const named = limitInMessage.exec(body.message ?? "")
  if (named !== null) return limitKinds[named[1]!.toLowerCase()]
  const empty = Object.entries(rateLimitReport(headers)).filter(([, report]) => report.remaining === 0)
  return empty.length === 1 ? limitKinds[empty[0]![0]] : undefined
}

/**
 * Parses how long a prompt was and how much fits out of a context-length message: OpenAI's "maximum context
 * length is 128000 tokens. However, your messages resulted in 130512 tokens" or Anthropic's "prompt is too
 * long: 208656 tokens > 200000 maximum".
 */
export const contextLengths = (
  message: string
): { readonly promptTokens?: number; readonly maxContextTokens?: number } => {
  const anthropic = /prompt is too long:\s*(\d+)\s*tokens\s*>\s*(\d+)/i.exec(message)
  if (anthropic) return { promptTokens: Number(anthropic[1]), maxContextTokens: Number(anthropic[2]) }
  // Anthropic, when the input fits but not with the output limit asked for: "input + max_tokens > window".
  const withOutput = /exceed context limit:\s*(\d+)\s*\+\s*\d+\s*>\s*(\d+)/i.exec(message)
  if (withOutput) return { promptTokens: Number(withOutput[1]), maxContextTokens: Number(withOutput[2]) }
  const max = /maximum context length is (\d+)/i.exec(message)
  const used = /resulted in (\d+) tokens/i.exec(message)
  return {
    ...(used ? { promptTokens: Number(used[1]) } : {}),
    ...(max ? { maxContextTokens: Number(max[1]) } : {})
  }
}

/**
 * The key values this process was configured with. Redaction must not depend on a key's format (an Azure key is
 * 32 hex digits, a gateway's may be anything), and what prints text (an error's detail, a log, a span exporter,
 * an out file) does not know which keys are configured; so the providers register them here once, and every
 * redaction removes them. A process has a few keys, for its lifetime.
 */
const configuredSecrets = globalValue(
  Symbol.for("plot-engine/internal/wire/configuredSecrets"),
  () => new Set<string>()
)

/**
 * Registers a configured key value, to be removed from every text `redactSecrets` cleans (values shorter than 8
 * characters are not keys, and would erase ordinary words).
 */
export const registerSecret = (secret: string): void => {
  if (secret.length >= 8) configuredSecrets.add(secret)
}

/** A run of the characters keys are made of, long enough to identify one. */
const keyLikeRun = /[A-Za-z0-9_\-.~+/=]{8,}/g

/** Removes the configured keys, whole or a piece of 8 characters or more (a gateway may quote a key in part). */
const redactConfigured = (text: string): string =>
  configuredSecrets.size === 0 ? text : text.replace(keyLikeRun, (run) => {
    for (const secret of configuredSecrets) {
      if (secret.includes(run) || run.includes(secret)) return "[redacted]"
    }
    return run
  })

/**
 * Removes the configured keys (see `registerSecret`) and anything shaped like an API key from text: `sk-...` keys
 * (OpenAI's 401 echoes part of the key), bearer tokens and `x-api-key` header values (a request printed into an
 * error or a span).
 */
export const redactSecrets = (text: string): string =>
  redactConfigured(text)
    .replace(/\b(Bearer)\s+[A-Za-z0-9_\-.~+/=*]{6,}/gi, "$1 [redacted]")
    .replace(/(x-api-key\\*"?\s*[:=]\s*\\*"?)[^"\\\s,]+/gi, "$1[redacted]")
    .replace(/\b(sk|sk-ant|sess|key)-[A-Za-z0-9_\-*.]{4,}/g, "$1-[redacted]")

/** What the provider reports about one bucket. */
export interface BucketReport {
  readonly limit?: number | undefined
  readonly remaining?: number | undefined
}

const numberHeader = (headers: Headers, name: string): number | undefined => {
  const value = headers[name]
  const n = value === undefined ? NaN : Number(value)
  return Number.isFinite(n) ? n : undefined
}

const report = (headers: Headers, limit: string, remaining: string): BucketReport | undefined => {
  const bucket = { limit: numberHeader(headers, limit), remaining: numberHeader(headers, remaining) }
  return bucket.limit === undefined && bucket.remaining === undefined ? undefined : bucket
}

/**
 * The buckets a response's rate-limit headers describe, by the limiter's names: `rpm` and `tpm` from OpenAI's
 * `x-ratelimit-*`, `rpm`, `itpm` and `otpm` from Anthropic's `anthropic-ratelimit-*`.
 */
export const rateLimitReport = (headers: Headers): Partial<Record<"rpm" | "tpm" | "itpm" | "otpm", BucketReport>> => {
  const out: Partial<Record<"rpm" | "tpm" | "itpm" | "otpm", BucketReport>> = {}
  const add = (bucket: "rpm" | "tpm" | "itpm" | "otpm", value: BucketReport | undefined) => {
    if (value !== undefined) out[bucket] = value
  }
  add("rpm", report(headers, "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests"))
  add("tpm", report(headers, "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens"))
  if (out.rpm === undefined) {
    add("rpm", report(headers, "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining"))
  }
  add("itpm", report(headers, "anthropic-ratelimit-input-tokens-limit", "anthropic-ratelimit-input-tokens-remaining"))
  add("otpm", report(headers, "anthropic-ratelimit-output-tokens-limit", "anthropic-ratelimit-output-tokens-remaining"))
  return out
}
