/**
 * The simulator's core: given a request already parsed from either wire dialect, decide the outcome (a reply,
 * or a fault) and count what was used. It knows nothing of HTTP, so the same core serves the HTTP face and
 * the in-process face.
 *
 * @since 0.1.0
 */
import * as Content from "./Content.js"
import type * as Faults from "./Faults.js"
import type * as PromptCache from "./PromptCache.js"
import type * as Quotas from "./Quotas.js"

/**
 * The wire dialects the simulator speaks.
 *
 * @since 0.1.0
 */
export type Dialect = "openai" | "anthropic"

/**
 * A request, whatever dialect it came in.
 *
 * @since 0.1.0
 */
export interface SimRequest {
  readonly dialect: Dialect
  readonly model: string
  /** All the text of the request: instructions, system prompt and messages. */
  readonly prompt: string
  readonly maxOutputTokens: number
  readonly stream: boolean
  /** The JSON schema the reply must match, when structured output was asked for. */
  readonly jsonSchema?: unknown
  /** The reasoning effort asked for (`reasoning.effort`); a reasoning model reasons at `medium` without one. */
  readonly reasoningEffort?: string | undefined
  /** Anthropic: the prefix through the request's last `cache_control` block, when it has one. */
  readonly breakpoint?: PromptCache.Breakpoint | undefined
}

/**
 * What the simulated model wrote.
 *
 * @since 0.1.0
 */
export interface SimReply {
  readonly _tag: "Reply"
  /** The reply as text (JSON text when structured output was asked for). */
  readonly text: string
  /** The structured value, when structured output was asked for. */
  readonly object: unknown
  readonly inputTokens: number
  /** Everything written, hidden reasoning included (providers bill reasoning as output). */
  readonly outputTokens: number
  /** The hidden reasoning a reasoning model spent out of the output limit before writing. */
  readonly reasoningTokens: number
  /**
   * `max_tokens` when the reply was cut at the output limit (with no text when reasoning used all of it);
   * `refusal` when the model declined (`text` is then its explanation).
   */
  readonly stopReason: "end" | "max_tokens" | "refusal"
  /** Of the input, what was read from the prompt cache and written to it (none when absent). */
  readonly cache?: PromptCache.CacheUse | undefined
  /** With a refusal: what was written before the model was stopped (Anthropic streams it, then the stop). */
  readonly writtenBeforeRefusal?: string | undefined
}

/**
 * A failure the provider would send, in dialect-neutral terms; the wire modules render it.
 *
 * @since 0.1.0
 */
export type SimFault =
  | {
    readonly _tag: "ContextTooLong"
    readonly promptTokens: number
    readonly contextWindow: number
  }
  /** A model the provider does not serve (or the key may not use). */
  | { readonly _tag: "ModelNotFound"; readonly model: string }
  /** A safety system rejected the request (OpenAI's 400 `content_policy_violation`). */
  | { readonly _tag: "ContentPolicy" }

/**
 * @since 0.1.0
 */
export type Outcome = SimReply | SimFault

/**
 * The context windows the simulator enforces, by model id prefix (longest prefix wins), and the dialect of the
 * provider that serves each family.
 *
 * @since 0.1.0
 */
export const contextWindows: ReadonlyArray<readonly [prefix: string, tokens: number, dialect: Dialect]> = [
  ["gpt-4.1", 1_047_576, "openai"],
  ["gpt-5", 400_000, "openai"],
  ["gpt-4o", 128_000, "openai"],
  ["gpt-4-turbo", 128_000, "openai"],
  ["gpt-4", 8_192, "openai"],
  ["gpt-3.5", 16_385, "openai"],
  ["o1", 200_000, "openai"],
  ["o3", 200_000, "openai"],
  ["o4", 200_000, "openai"],
  ["claude-opus-", 200_000, "anthropic"],
  ["claude-sonnet-", 200_000, "anthropic"],
  ["claude-haiku-", 200_000, "anthropic"],
  ["claude-3", 200_000, "anthropic"]
]

/**
 * Whether the simulator serves a model (in `dialect`, when given): the families of `contextWindows`, each on its own
 * provider's API; any other id is answered as the provider answers a model it does not have.
 *
 * @since 0.1.0
 */
export const servesModel = (model: string, dialect?: Dialect): boolean =>
  contextWindows.some(([prefix, , serves]) => model.startsWith(prefix) && (dialect === undefined || dialect === serves))

/**
 * The context window of a model id (128,000 for ids the simulator does not know).
 *
 * @since 0.1.0
 */
export const contextWindowOf = (model: string): number => {
  const match = contextWindows
    .filter(([prefix]) => model.startsWith(prefix))
    .sort((a, b) => b[0].length - a[0].length)[0]
  return match === undefined ? 128_000 : match[1]
}

/**
 * How many words to write: what the prompt asks for, within what the output limit allows.
 *
 * @since 0.1.0
 */
export const wordsFor = (request: SimRequest, outputLimit = request.maxOutputTokens): number => {
  const allowed = Math.max(40, Math.floor((outputLimit * 0.75) / 1.4))
  return Math.min(Content.wordsAskedFor(request.prompt) ?? allowed, allowed)
}

/**
 * Whether a model reasons before it writes, as OpenAI's gpt-5 family and o-series do.
 *
 * @since 0.1.0
 */
export const isReasoningModel = (model: string): boolean => /^(gpt-5|o\d)/.test(model)

/**
 * The reasoning a reasoning model spends before it writes, at each effort, before one token per word it is asked
 * to write: more effort, and a longer piece, take more thought.
 *
 * @since 0.1.0
 */
export const reasoningBase: Readonly<Record<string, number>> = {
  minimal: 64,
  low: 1_024,
  medium: 4_096,
  high: 12_288
}

/**
 * The hidden reasoning of a request: none for a model that does not reason.
 *
 * @since 0.1.0
 */
export const reasoningTokensFor = (request: SimRequest): number =>
  isReasoningModel(request.model)
    ? (reasoningBase[request.reasoningEffort ?? "medium"] ?? reasoningBase.medium!) +
      (Content.wordsAskedFor(request.prompt) ?? 500)
    : 0

/**
 * What a declining model says (OpenAI's refusal part carries it; Anthropic sends only its stop reason).
 *
 * @since 0.2.0
 */
export const refusalText = "I'm sorry, but I can't help with that request."

/**
 * Whether the model declines a request: the prompt carries `[simulate refusal]` (the model declines in its answer)
 * or `[simulate content-policy]` (a safety system rejects the request: OpenAI's 400; Anthropic, which has none,
 * declines in its answer), for every provider or, with `: openai` or `: anthropic`, for one dialect.
 *
 * @since 0.2.0
 */
export const declines = (request: SimRequest): "refusal" | "content-policy" | undefined => {
  for (
    const [, what, dialect] of request.prompt.matchAll(
      /\[simulate (refusal|content-policy)(?:: (openai|anthropic))?\]/g
    )
  ) {
    if (dialect !== undefined && dialect !== request.dialect) continue
    return what === "content-policy" && request.dialect === "openai" ? "content-policy" : "refusal"
  }
  return undefined
}

/**
 * Decides the outcome of a request: a model it does not serve, a refusal the prompt asks for (see `declines`), a
 * context-length fault when the prompt does not fit the model, else a reply written from the prompt, deterministic for a given request and seed.
 *
 * @since 0.1.0
 */
export const respond = (
  request: SimRequest,
  seed: number,
  inputTokens = Content.countTokens(request.prompt)
): Outcome => {
  if (!servesModel(request.model, request.dialect)) return { _tag: "ModelNotFound", model: request.model }
  const contextWindow = contextWindowOf(request.model)
  if (inputTokens + request.maxOutputTokens > contextWindow) {
    return { _tag: "ContextTooLong", promptTokens: inputTokens, contextWindow }
  }
  switch (declines(request)) {
    case "content-policy":
      return { _tag: "ContentPolicy" }
    case "refusal": {
      // Stopped a third of the way through what it would have written (Anthropic's streaming classifiers stop an
      // answer under way; OpenAI writes its refusal instead, and that is all it bills).
      const written = write(request, seed, inputTokens)
      const before = written.text.slice(0, Math.floor(written.text.length / 3))
      return {
        ...written,
        text: refusalText,
        object: undefined,
        outputTokens: Content.countTokens(request.dialect === "anthropic" ? before : refusalText),
        reasoningTokens: 0,
        stopReason: "refusal",
        writtenBeforeRefusal: before
      }
    }
  }
  return write(request, seed, inputTokens)
}

/** The reply a model writes for a request it serves and accepts. */
const write = (request: SimRequest, seed: number, inputTokens: number): SimReply => {
  // A reasoning model thinks first, out of the same output limit: when that uses it all, nothing is written.
  const reasoningTokens = reasoningTokensFor(request)
  if (reasoningTokens >= request.maxOutputTokens) {
    return {
      _tag: "Reply",
      text: "",
      object: undefined,
      inputTokens,
      outputTokens: request.maxOutputTokens,
      reasoningTokens: request.maxOutputTokens,
      stopReason: "max_tokens"
    }
  }
  const visibleLimit = request.maxOutputTokens - reasoningTokens
  const schema = request.jsonSchema ?? Content.schemaInPrompt(request.prompt)
  // A model asked for more than its output limit holds writes less, as a real one wraps up early; only what
  // still does not fit is cut off at the limit.
  let words = wordsFor(request, visibleLimit)
  for (let attempt = 0;; attempt++) {
    const writer = Content.makeWriter(request.prompt, seed ^ Content.hash(request.model))
    const object = schema === undefined ? undefined : Content.fromSchema(schema, writer, words)
    const body = object === undefined ? Content.prose(writer, words) : JSON.stringify(object)
    // Asked for JSON in plain text: answer as chat models do, with a sentence and a fenced block.
    const text = request.jsonSchema === undefined && object !== undefined
      ? `Here is the plot you asked for.\n\n\`\`\`json\n${JSON.stringify(object, null, 2)}\n\`\`\``
      : body
    const outputTokens = Content.countTokens(text)
    if (outputTokens <= visibleLimit) {
      return {
        _tag: "Reply",
        text,
        object,
        inputTokens,
        outputTokens: outputTokens + reasoningTokens,
        reasoningTokens,
        stopReason: "end"
      }
    }
    if (attempt === 3) {
      const cut = text.slice(0, visibleLimit * 3)
      return {
        _tag: "Reply",
        text: cut,
        object: undefined,
        inputTokens,
        outputTokens: request.maxOutputTokens,
        reasoningTokens,
        stopReason: "max_tokens"
      }
    }
    words = Math.floor((words * visibleLimit) / outputTokens * 0.9)
  }
}

/**
 * A reply stopped at its output limit halfway through: the first half of its text, no object, the whole limit
 * spent.
 *
 * @since 0.1.0
 */
export const cutOff = (reply: SimReply, request: SimRequest): SimReply => ({
  ...reply,
  text: reply.text.slice(0, Math.floor(reply.text.length / 2)),
  object: undefined,
  outputTokens: request.maxOutputTokens,
  stopReason: "max_tokens"
})

/**
 * Splits a reply into stream deltas of a few words each, as providers stream tokens.
 *
 * @since 0.1.0
 */
export const deltas = (text: string, size = 24): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size))
  return out
}

/**
 * What a quota refusal is, as a fault to render: a 429 with its numbers, or, when the request could never fit
 * the bucket, "request too large".
 *
 * @since 0.1.0
 */
export const quotaFault = (limited: Extract<Quotas.Admission, { _tag: "Limited" }>): Faults.Fault =>
  limited.requested > limited.limit
    ? { kind: "request_too_large", quota: limited, headers: limited.headers }
    : { kind: "rate_limit", retryAfterMs: limited.retryAfterMs, quota: limited, headers: limited.headers }
