/**
 * The simulator's prompt caches, as the providers keep them, per API key and model, on the `Clock` the simulator
 * runs on. OpenAI caches automatically: the longest prefix a recent request shared with this one, from 1,024
 * tokens up, in steps of 128, kept 5 minutes after its last use. Anthropic caches only up to a `cache_control`
 * breakpoint: the prefix through the marked block is read when a request wrote it within its time to live (5
 * minutes, or 1 hour), else written, when it is long enough for the model (4,096 tokens for Claude Haiku 4.5 and
 * Opus 4.5 and later, 1,024 for the others); below that nothing is cached, and nothing is said.
 *
 * @since 0.1.0
 */
import * as Content from "./Content.js"

/**
 * What a request read from the cache and wrote to it, in tokens.
 *
 * @since 0.1.0
 */
export interface CacheUse {
  readonly readTokens: number
  readonly writtenTokens: number
}

/**
 * @since 0.1.0
 */
export const noCacheUse: CacheUse = { readTokens: 0, writtenTokens: 0 }

/**
 * An Anthropic request's cacheable prefix: everything through its last `cache_control` block, and that block's
 * time to live.
 *
 * @since 0.1.0
 */
export interface Breakpoint {
  /** The blocks through the breakpoint as sent (tools included): what must match exactly. */
  readonly prefix: string
  /** Their text, as the prompt's tokens are counted. */
  readonly text: string
  readonly ttlMillis: number
}

/**
 * A breakpoint's time to live in milliseconds: an hour when it says `1h`, else Anthropic's default 5 minutes.
 *
 * @since 0.1.0
 */
export const ttlMillisOf = (ttl: unknown): number => (ttl === "1h" ? 3_600_000 : 300_000)

/**
 * @since 0.1.0
 */
export interface PromptCache {
  /** OpenAI: the longest cached prefix of `prompt` is read; the prompt is cached for the next request. */
  readonly openai: (apiKey: string, model: string, prompt: string, now: number) => CacheUse
  /** Anthropic: the prefix through the breakpoint is read when cached, else written (when long enough). */
  readonly anthropic: (apiKey: string, model: string, breakpoint: Breakpoint | undefined, now: number) => CacheUse
}

interface Entry {
  readonly text: string
  expiresAt: number
}

const openAiTtlMillis = 5 * 60_000
const openAiMinimum = 1_024
const openAiStep = 128
/** Recent prompts kept per key and model for OpenAI's prefix matching. */
const openAiEntries = 32

/** The fewest tokens Anthropic caches for a model (below it the breakpoint is ignored). */
export const anthropicMinimum = (model: string): number => /haiku-4-5|opus-4-[5-9]/.test(model) ? 4_096 : 1_024

/** The length of the prefix two texts share. */
const sharedPrefix = (a: string, b: string): number => {
  const n = Math.min(a.length, b.length)
  let i = 0
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++
  return i
}

/**
 * A fresh cache (one per simulator).
 *
 * @since 0.1.0
 */
export const make = (): PromptCache => {
  const entries = new Map<string, Array<Entry>>()
  const live = (key: string, now: number) => {
    const kept = (entries.get(key) ?? []).filter((entry) => entry.expiresAt > now)
    entries.set(key, kept)
    return kept
  }
  return {
    openai: (apiKey, model, prompt, now) => {
      const kept = live(`openai\u0000${apiKey}\u0000${model}`, now)
      let best: Entry | undefined
      let bestLength = 0
      for (const entry of kept) {
        const length = sharedPrefix(entry.text, prompt)
        if (length > bestLength) {
          best = entry
          bestLength = length
        }
      }
      const same = kept.find((entry) => entry.text === prompt)
      if (same === undefined) {
        kept.push({ text: prompt, expiresAt: now + openAiTtlMillis })
        if (kept.length > openAiEntries) kept.shift()
      } else same.expiresAt = now + openAiTtlMillis
      const tokens = bestLength === 0 ? 0 : Content.countTokens(prompt.slice(0, bestLength))
      const read = tokens < openAiMinimum ? 0 : Math.floor(tokens / openAiStep) * openAiStep
      // A hit keeps the prefix alive; a miss (or a prefix under the minimum) does not.
      if (read > 0) best!.expiresAt = now + openAiTtlMillis
      return { readTokens: read, writtenTokens: 0 }
    },
    anthropic: (apiKey, model, breakpoint, now) => {
      if (breakpoint === undefined) return noCacheUse
      const tokens = Content.countTokens(breakpoint.text)
      if (tokens < anthropicMinimum(model)) return noCacheUse
      const kept = live(`anthropic\u0000${apiKey}\u0000${model}`, now)
      const hit = kept.find((entry) => entry.text === breakpoint.prefix)
      if (hit !== undefined) {
        // A hit refreshes the entry's time to live, for free.
        hit.expiresAt = Math.max(hit.expiresAt, now + breakpoint.ttlMillis)
        return { readTokens: tokens, writtenTokens: 0 }
      }
      kept.push({ text: breakpoint.prefix, expiresAt: now + breakpoint.ttlMillis })
      return { readTokens: 0, writtenTokens: tokens }
    }
  }
}
