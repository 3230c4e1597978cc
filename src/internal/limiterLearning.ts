/**
 * What a rate-limiter key learns of its provider's limits, beside the queue it keeps (`limiterKeys.ts`): the last
 * minute's reservations (what a 429 says the quota is below), the limits a 429 reached and how far they come down,
 * how the provider counts prompts against the caller's estimates (the input scale), and the climb back of limits a
 * 429 cut. Plain functions of a key's state, without effects.
 *
 * @internal
 */
import type * as Errors from "../Errors.js"
import type * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import type * as QuotaSignals from "../QuotaSignals.js"
import type * as LimiterKeys from "./limiterKeys.js"

type Quota = ProviderRateLimiter.Quota
type Estimate = ProviderRateLimiter.Estimate

/** The window every limit is per: a minute. */
export const windowMillis = 60_000

/**
 * The limits of `quota` a 429 reached: the one it named, or, where the quota does not keep that one, its nearest
 * (OpenAI's tokens are Anthropic's input and output tokens, either of those OpenAI's tokens); every limit when it
 * named none, or none of those is kept.
 */
export const reachedLimits = (quota: Quota, limit: Errors.RateLimitKind | undefined): ReadonlyArray<QuotaField> => {
  if (limit === undefined) return quotaFields
  for (const fields of limitFields[limit]) {
    const kept = fields.filter((field) => quota[field] !== undefined)
    if (kept.length > 0) return kept
  }
  return quotaFields
}

const limitFields: Readonly<Record<Errors.RateLimitKind, ReadonlyArray<ReadonlyArray<QuotaField>>>> = {
  "requests": [["requestsPerMinute"]],
  "tokens": [["tokensPerMinute"], ["inputTokensPerMinute", "outputTokensPerMinute"]],
  "input-tokens": [["inputTokensPerMinute"], ["tokensPerMinute"]],
  "output-tokens": [["outputTokensPerMinute"], ["tokensPerMinute"]]
}

/** What the last minute used of the budget of a limit. */
export const usedOf = (used: ReturnType<typeof usedInLastMinute>, field: QuotaField): number =>
  field === "requestsPerMinute"
    ? used.requests
    : field === "tokensPerMinute"
    ? used.inputTokens + used.outputTokens
    : field === "inputTokensPerMinute"
    ? used.inputTokens
    : used.outputTokens

export const limitsOf = (quota: Quota): QuotaSignals.Limits => {
  const limits: { -readonly [F in QuotaField]?: number } = {}
  for (const field of quotaFields) if (quota[field] !== undefined) limits[field] = quota[field]
  return limits as QuotaSignals.Limits
}

/**
 * Whether a 429 says the provider's bucket was short of one request rather than that requests come too fast: its
 * retry-after is shorter than the spacing of this key's requests at the limits it reached (for the mean request of
 * the last minute). Limits that match the provider's meet that at a burst's end, or when estimates run a little
 * short (the provider's bucket refilled into a full one while a first request was on its way), once: the refused
 * request's reservation is kept, and the limiter is then behind the provider. A cut then would slow every caller for
 * minutes to save one 429. Limits too high meet 429s again within the minute: the second cuts.
 */
export const atTheEdge = (
  state: LimiterKeys.KeyState,
  reached: ReadonlyArray<QuotaField>,
  used: ReturnType<typeof usedInLastMinute>,
  retryAfterMillis: number
): boolean => {
  if (used.requests === 0) return false
  let spacing = 0
  for (const field of reached) {
    const limit = state.quota[field]
    if (limit !== undefined) spacing = Math.max(spacing, (windowMillis * usedOf(used, field)) / used.requests / limit)
  }
  return retryAfterMillis < spacing
}

/**
 * A limit after a 429: a tenth lower, and, when this instance used at least half of it in the last minute, no
 * higher than what it used (the provider refused at that rate: its quota is below it). Less use says little (others
 * share the quota, or the key was idle): a tenth then.
 */
export const cut = (limit: number, usedInLastMinute: number): number => {
  const lowered = usedInLastMinute >= 0.5 * limit ? Math.min(0.9 * limit, usedInLastMinute) : 0.9 * limit
  return Math.max(1, Math.floor(lowered))
}

/** One reservation of the last minute: a request and its tokens, as reserved, then as counted. */
export interface Reserved {
  readonly at: number
  requests: number
  inputTokens: number
  outputTokens: number
}

/** A waiter's reservation, remembered for a minute. */
export const remember = (state: LimiterKeys.KeyState, waiter: LimiterKeys.Waiter, now: number) => {
  const reserved: Reserved = {
    at: now,
    requests: 1,
    inputTokens: waiter.estimate.inputTokens,
    outputTokens: waiter.estimate.outputTokens
  }
  waiter.reserved = reserved
  state.recent.push(reserved)
  forgetBefore(state, now - windowMillis)
}

/** A reservation given back: never sent, it used nothing. */
export const forgetReservation = (waiter: LimiterKeys.Waiter) => {
  const reserved = waiter.reserved
  if (reserved === undefined) return
  reserved.requests = 0
  reserved.inputTokens = 0
  reserved.outputTokens = 0
}

export const forgetBefore = (state: LimiterKeys.KeyState, since: number) => {
  while (state.recentHead < state.recent.length && state.recent[state.recentHead]!.at <= since) state.recentHead++
  // Compacted once the forgotten part is most of the array: amortized O(1) per reservation.
  if (state.recentHead > 1_024 && state.recentHead * 2 > state.recent.length) {
    state.recent = state.recent.slice(state.recentHead)
    state.recentHead = 0
  }
}

/** What the last minute's reservations took, per kind, as counted when known. */
export const usedInLastMinute = (state: LimiterKeys.KeyState, now: number) => {
  forgetBefore(state, now - windowMillis)
  const used = { requests: 0, inputTokens: 0, outputTokens: 0 }
  for (let i = state.recentHead; i < state.recent.length; i++) {
    const reserved = state.recent[i]!
    used.requests += reserved.requests
    used.inputTokens += reserved.inputTokens
    used.outputTokens += reserved.outputTokens
  }
  return used
}

/** The most a prompt's estimate is scaled up by, and the share of the gap it eases down by per call below it. */
const inputScaleCeiling = 1.5

const inputScaleEase = 0.02

/**
 * An estimate with its input tokens scaled by how the provider has been counting prompts (with `adaptive`): a
 * reservation that is a few percent short (the provider counts framing and formats the caller's tokenizer does
 * not see) lets a limiter at its quota's edge send what the provider's bucket does not hold yet, and every 429 then
 * cuts the limits.
 */
export const inputScaled = (state: LimiterKeys.KeyState, estimate: Estimate): Estimate =>
  state.inputScale === 1 || estimate.inputTokens === 0
    ? estimate
    : { inputTokens: Math.ceil(estimate.inputTokens * state.inputScale), outputTokens: estimate.outputTokens }

/**
 * Learns from a call's reported usage how the provider counts prompts: the scale rises at once to a higher ratio of
 * counted to estimated input tokens (a reservation short again would meet the same 429), and eases down by a
 * fiftieth of the gap per call that counted less; never below 1 (an estimate too high costs a wait until the
 * reconciliation gives the rest back, not a 429) nor above 1.5.
 */
export const learnInputScale = (state: LimiterKeys.KeyState, estimated: number, counted: number): void => {
  if (estimated <= 0 || counted <= 0) return
  const ratio = Math.min(inputScaleCeiling, Math.max(1, counted / estimated))
  state.inputScale = ratio >= state.inputScale
    ? ratio
    : state.inputScale + (ratio - state.inputScale) * inputScaleEase
}

/** How much the limits in force climb back per minute without a 429: a twentieth of the ceiling. */
const climbShare = 0.05

/**
 * Limits cut by 429s climb back: every whole minute without a 429 since they last changed, each limit below its
 * ceiling (the provider's reported limit, else the configured one) rises by a twentieth of the ceiling, up to it.
 * A quota configured too high, with no headers to say so, settles where the 429s stop; one cut too far by a burst
 * of 429s recovers.
 */
export const climbIfDue = (shared: LimiterKeys.Shared, state: LimiterKeys.KeyState, now: number): void => {
  const minutes = Math.floor((now - state.limitsChangedAt) / windowMillis)
  if (!shared.adaptive || minutes < 1 || now < state.pausedUntil) return
  let quota = state.quota
  for (const field of quotaFields) {
    const inForce = quota[field]
    const ceiling = state.reported[field] ?? state.configured[field]
    if (inForce === undefined || ceiling === undefined || inForce >= ceiling) continue
    const step = Math.max(1, Math.ceil(ceiling * climbShare))
    quota = { ...quota, [field]: Math.min(ceiling, inForce + minutes * step) }
  }
  state.limitsChangedAt += minutes * windowMillis
  state.quota = quota
}

export type QuotaField = "requestsPerMinute" | "tokensPerMinute" | "inputTokensPerMinute" | "outputTokensPerMinute"

export const quotaFields: ReadonlyArray<QuotaField> = [
  "requestsPerMinute",
  "tokensPerMinute",
  "inputTokensPerMinute",
  "outputTokensPerMinute"
]
