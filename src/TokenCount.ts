/**
 * Counting the tokens of prompts. OpenAI models count with their own encoding from gpt-tokenizer (o200k for
 * current models, cl100k for the older ones), the tokenizer `@effect/ai`'s `OpenAiTokenizer` wraps. Claude's
 * tokenizer has not been public since Claude 3, so a Claude count is the o200k count times a margin that each
 * usage Anthropic reports corrects (`calibrate`).
 *
 * A counter remembers the texts that come again (a project's items, the prompt's fixed parts) and counts a
 * request's own words once, without keeping them: thousands of one-off prompts would only fill its cache.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as cl100k from "gpt-tokenizer/encoding/cl100k_base"
import * as o200k from "gpt-tokenizer/encoding/o200k_base"
import type * as ModelCatalog from "./ModelCatalog.js"

// =============================================================================
// Counting
// =============================================================================

/**
 * Counts the tokens of a text.
 *
 * @since 0.1.0
 * @category Counting
 */
export type Count = (text: string) => number

/**
 * The rough count both providers document: about four characters a token.
 *
 * @since 0.1.0
 * @category Counting
 */
export const estimateTokens: Count = (text) => tokensOfLength(text.length)

/**
 * The rough count of a text of `characters` characters, for text that is not kept (a stream cut off midway).
 *
 * @since 0.1.0
 * @category Counting
 */
export const tokensOfLength = (characters: number): number => Math.ceil(characters / 4)

/**
 * The model whose encoding counts an OpenAI model's tokens. gpt-tokenizer 2.9 knows gpt-4o (o200k) but not
 * gpt-4.1 or gpt-5, which use the same encoding; the older models count with their own (cl100k).
 *
 * @since 0.1.0
 * @category Counting
 */
export const encodingModel = (model: Pick<ModelCatalog.ModelInfo, "provider" | "id">): string =>
  model.provider === "openai" && /^gpt-(4|3\.5)(-turbo|-32k|-0|$)/.test(model.id) && !model.id.startsWith("gpt-4o")
    ? model.id.startsWith("gpt-3.5") ? "gpt-3.5-turbo" : "gpt-4"
    : "gpt-4o"

/**
 * A count with the model's encoding from gpt-tokenizer (o200k for current OpenAI models, cl100k for the older
 * ones), the tokenizer `@effect/ai`'s `OpenAiTokenizer` wraps, called directly: a text is counted as text,
 * without the chat framing of a message, in a few microseconds. A text it cannot encode is estimated instead.
 *
 * @since 0.1.0
 * @category Counting
 */
export const openAiCount = (model: string): Count => {
  const countTokens = encodingModel({ provider: "openai", id: model }) === "gpt-4o"
    ? o200k.countTokens
    : cl100k.countTokens
  return (text) => {
    try {
      return countTokens(text)
    } catch {
      return estimateTokens(text)
    }
  }
}

/**
 * A count with a cache of the most recent `capacity` texts, and how many texts it had to tokenize.
 *
 * @since 0.1.0
 * @category Counting
 */
export interface CachedCount {
  readonly count: Count
  /** Texts tokenized so far (cache misses). */
  readonly tokenized: () => number
}

/**
 * Caches a count by text, evicting the least recently used past `capacity`.
 *
 * @since 0.1.0
 * @category Counting
 */
export const cached = (count: Count, capacity = 20_000): CachedCount => {
  const cache = new Map<string, number>()
  let misses = 0
  return {
    count: (text) => {
      const hit = cache.get(text)
      if (hit !== undefined) {
        cache.delete(text)
        cache.set(text, hit)
        return hit
      }
      misses++
      const tokens = count(text)
      cache.set(text, tokens)
      if (cache.size > capacity) cache.delete(cache.keys().next().value!)
      return tokens
    },
    tokenized: () => misses
  }
}

// =============================================================================
// Calibrating Claude's counts
// =============================================================================

/**
 * The margin a Claude count starts with over the o200k count, before reported usage corrects it.
 *
 * @since 0.1.0
 * @category Calibration
 */
export const anthropicMargin = 1.15

/**
 * The margin after a reported usage: 70 % of the old margin and 30 % of the one observed (with 5 % to spare),
 * kept between 1 and 2 and rounded to 0.01, so that counts are remade only when it moves a step.
 *
 * @example
 * ```ts
 * import { TokenCount } from "plot-engine"
 *
 * // Estimated 1,000 tokens at the starting margin; Anthropic reported 1,300.
 * TokenCount.calibratedMargin(1.15, 1_000, 1_300) // 1.28
 * ```
 *
 * @since 0.1.0
 * @category Calibration
 */
export const calibratedMargin = (margin: number, estimatedInputTokens: number, reportedInputTokens: number): number => {
  if (reportedInputTokens === 0 || estimatedInputTokens === 0) return margin
  const observed = (reportedInputTokens / estimatedInputTokens) * margin
  const next = Math.min(2, Math.max(1, 0.7 * margin + 0.3 * observed * 1.05))
  return Math.round(next * 100) / 100
}

// =============================================================================
// Counters
// =============================================================================

/**
 * The counts of one encoding: `remembered` for texts that come again, `once` for a request's own words.
 *
 * @since 0.1.0
 * @category Counters
 */
export interface Counter {
  readonly remembered: Count
  readonly once: Count
}

/**
 * The counters of an engine: one per encoding, and Claude's scaled by the calibrated margin.
 *
 * @since 0.1.0
 * @category Counters
 */
export interface Service {
  /** The counter of an encoding, named by a model that uses it (see `encodingModel`). */
  readonly forEncoding: (encodingModel: string) => Counter
  /** The counter that estimates a model's counts: its encoding's, scaled by the margin for Claude. */
  readonly forModel: (model: ModelCatalog.ModelInfo) => Effect.Effect<Counter>
  /** Corrects Claude's margin with the input tokens Anthropic reported for a prompt estimated at `estimated`. */
  readonly calibrate: (
    model: ModelCatalog.ModelInfo,
    estimatedInputTokens: number,
    reportedInputTokens: number
  ) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category Counters
 */
export interface Options {
  /** How to count an encoding (default `openAiCount`, the real tokenizer); the counters remember either way. */
  readonly count?: ((encodingModel: string) => Count) | undefined
}

/**
 * Makes the counters of an engine.
 *
 * @since 0.1.0
 * @category Counters
 */
export const make = (options: Options = {}): Effect.Effect<Service> =>
  Effect.map(Ref.make(anthropicMargin), (margin) => {
    const counters = new Map<string, Counter>()
    const forEncoding = (encoding: string): Counter => {
      let counter = counters.get(encoding)
      if (counter === undefined) {
        const once = options.count?.(encoding) ?? openAiCount(encoding)
        counter = { remembered: cached(once).count, once }
        counters.set(encoding, counter)
      }
      return counter
    }
    // One scaled counter per encoding and margin step, made once.
    const scaled = new Map<string, Counter>()
    const scaledBy = (encoding: string, factor: number): Counter => {
      const key = `${encoding}:${factor}`
      let counter = scaled.get(key)
      if (counter === undefined) {
        const base = forEncoding(encoding)
        counter = {
          remembered: (text) => Math.ceil(base.remembered(text) * factor),
          once: (text) => Math.ceil(base.once(text) * factor)
        }
        scaled.set(key, counter)
      }
      return counter
    }
    return {
      forEncoding,
      forModel: (model) =>
        model.provider === "anthropic"
          ? Effect.map(Ref.get(margin), (factor) => scaledBy(encodingModel(model), factor))
          : Effect.succeed(forEncoding(encodingModel(model))),
      calibrate: (model, estimated, reported) =>
        model.provider === "anthropic"
          ? Ref.update(margin, (factor) => calibratedMargin(factor, estimated, reported))
          : Effect.void
    }
  })
