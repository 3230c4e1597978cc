/**
 * The simulator's in-process face: the same core, quotas and faults as a `LanguageModel`, on Effect's `Clock`
 * (so it runs in virtual time under `TestClock`). Its failures are the `AiError` values the real clients produce for
 * the same answers: an error answer's status, headers and body; a connection lost (a reset, a hang's end); a body
 * the client cannot read; a stream cut short, gone silent or broken by an error event.
 *
 * @since 0.1.0
 */
import * as AiError from "@effect/ai/AiError"
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Prompt from "@effect/ai/Prompt"
import type * as Response from "@effect/ai/Response"
import * as Tool from "@effect/ai/Tool"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as Providers from "../Providers.js"
import * as AnthropicWire from "./AnthropicWire.js"
import * as Content from "./Content.js"
import * as Core from "./Core.js"
import * as Faults from "./Faults.js"
import * as OpenAiWire from "./OpenAiWire.js"
import * as PromptCache from "./PromptCache.js"
import * as Quotas from "./Quotas.js"
import type * as Wire from "./Wire.js"

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options {
  readonly seed?: number | undefined
  readonly quotas?: Quotas.QuotaOptions | undefined
  readonly faults?: Faults.RandomFaults | undefined
  /** The key quotas and scripts are kept under (default `in-process`). */
  readonly apiKey?: string | undefined
  /** Cache prompts as the providers do (default `true`; see `PromptCache`). */
  readonly promptCache?: boolean | undefined
  /**
   * Called with the rate-limit headers of every answer, as an HTTP client would see them (default: reported to
   * the call's observer, `Providers.reportHeaders`, as the real clients do).
   */
  readonly onResponse?:
    | ((dialect: Core.Dialect, headers: Readonly<Record<string, string>>) => Effect.Effect<void>)
    | undefined
}

/**
 * What the in-process simulator has answered.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Counts {
  requests: number
  limited: number
  inputTokens: number
  outputTokens: number
  /** What the requests answered asked for: prompt plus max output tokens, as OpenAI's quota counts them. */
  requestedTokens: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface InProcessSimulator {
  /** A language model of a dialect's model, with the call parameters a provider would receive. */
  readonly languageModel: (
    dialect: Core.Dialect,
    model: string,
    parameters: { readonly maxOutputTokens: number }
  ) => Effect.Effect<LanguageModel.Service>
  readonly plan: Faults.FaultPlan
  readonly counts: Readonly<Counts>
}

const promptText = (prompt: Prompt.Prompt): string =>
  prompt.content
    .map((message) =>
      typeof message.content === "string"
        ? message.content
        : message.content.map((part) => ("text" in part && typeof part.text === "string" ? part.text : "")).join("\n")
    )
    .join("\n\n")

/**
 * An Anthropic prompt's cacheable prefix, as the client would send it: its texts through the last part (or
 * message) with a `cacheControl` option, and that breakpoint's time to live.
 */
const breakpointOf = (prompt: Prompt.Prompt): PromptCache.Breakpoint | undefined => {
  const texts: Array<string> = []
  let marked: { readonly length: number; readonly ttl: unknown } | undefined
  const controlOf = (options: unknown) =>
    (options as { anthropic?: { cacheControl?: { ttl?: unknown } } } | undefined)?.anthropic?.cacheControl
  for (const message of prompt.content) {
    if (typeof message.content === "string") {
      texts.push(message.content)
      const control = controlOf(message.options)
      if (control !== undefined) marked = { length: texts.length, ttl: control.ttl }
      continue
    }
    for (const part of message.content) {
      texts.push("text" in part && typeof part.text === "string" ? part.text : "")
      const control = controlOf(part.options)
      if (control !== undefined) marked = { length: texts.length, ttl: control.ttl }
    }
  }
  if (marked === undefined) return undefined
  const text = texts.slice(0, marked.length).filter((t) => t !== "").join("\n\n")
  return { prefix: text, text, ttlMillis: PromptCache.ttlMillisOf(marked.ttl) }
}

/** The error a real client builds from a wire answer. */
/** Who an error says failed, as the real clients name themselves, and the request it was failing. */
const failingCall = (dialect: Core.Dialect) => ({
  module: dialect === "openai" ? "OpenAiClient" : "AnthropicClient",
  method: "inProcess",
  request: {
    method: "POST" as const,
    url: dialect === "openai" ? "in-process/v1/responses" : "in-process/v1/messages",
    urlParams: [],
    hash: Option.none(),
    headers: {}
  }
})

const toAiError = (dialect: Core.Dialect, error: Wire.WireError): AiError.AiError =>
  new AiError.HttpResponseError({
    ...failingCall(dialect),
    reason: "StatusCode",
    response: { status: error.status, headers: { "content-type": "application/json", ...error.headers } },
    body: JSON.stringify(error.body, null, 2)
  })

/** What a client reports when the connection is lost without an answer (reset, or closed after a hang). */
const transportError = (dialect: Core.Dialect, description: string): AiError.AiError =>
  new AiError.HttpRequestError({
    ...failingCall(dialect),
    reason: "Transport",
    description
  })

/** What a client reports of a 200 whose body it could not read (broken JSON, or cut short). */
const unreadableError = (dialect: Core.Dialect): AiError.AiError =>
  new AiError.HttpResponseError({
    ...failingCall(dialect),
    reason: "Decode",
    response: { status: 200, headers: { "content-type": "application/json" } },
    description: "the response body is not valid JSON"
  })

/**
 * A streamed answer under a fault that has no error answer, as the client reads the simulator's stream over HTTP: half
 * of it then silence until the simulator closes the connection (`stall`), all of it after the silence
 * (`slow_first_token`), half of it then its end (`truncated_sse`) or an error event (`stream_error`) or an event the
 * client cannot read (`malformed_json`), or all of it but the last event (`missing_terminator`).
 */
const playOut = (
  dialect: Core.Dialect,
  fault: Faults.Fault,
  request: Core.SimRequest,
  parts: ReadonlyArray<Response.StreamPartEncoded>,
  hangMs: number
): Stream.Stream<Response.StreamPartEncoded, AiError.AiError> => {
  const half = Stream.fromIterable(parts.slice(0, Math.max(1, Math.floor(parts.length / 2))))
  const silence = Stream.drain(Stream.fromEffect(Effect.sleep(hangMs)))
  switch (fault.kind) {
    case "stall":
      return Stream.concat(half, silence)
    case "slow_first_token":
      return Stream.concat(silence, Stream.fromIterable(parts))
    case "truncated_sse":
      return half
    case "missing_terminator":
      return Stream.fromIterable(parts.slice(0, -1))
    case "stream_error": {
      const event = dialect === "openai"
        ? OpenAiWire.streamErrorEvent(fault, request, Math.floor(parts.length / 2), () => ({}))
        : AnthropicWire.streamErrorEvent(fault)
      return Stream.concat(half, Stream.make<Array<Response.StreamPartEncoded>>({ type: "error", error: event.data }))
    }
    default:
      return Stream.concat(half, Stream.fail(unreadableError(dialect)))
  }
}

/**
 * Makes an in-process simulator.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (options: Options = {}): InProcessSimulator => {
  const seed = options.seed ?? 1
  const apiKey = options.apiKey ?? "in-process"
  const quotas = Quotas.make(options.quotas ?? {})
  const plan = Faults.makePlan(seed, options.faults)
  const promptCache = options.promptCache === false ? undefined : PromptCache.make()
  const counts: Counts = { requests: 0, limited: 0, inputTokens: 0, outputTokens: 0, requestedTokens: 0 }
  let sequence = 0
  // Retries send the same prompt again: count each prompt once.
  const promptTokens = new Map<string, number>()
  const countPrompt = (prompt: string) => {
    let tokens = promptTokens.get(prompt)
    if (tokens === undefined) {
      tokens = Content.countTokens(prompt)
      if (promptTokens.size >= 256) promptTokens.delete(promptTokens.keys().next().value!)
      promptTokens.set(prompt, tokens)
    }
    return tokens
  }

  const hangMs = options.faults?.hangMs ?? Faults.defaultHangMs

  const answer = (
    dialect: Core.Dialect,
    model: string,
    parameters: Providers.ModelParameters,
    providerOptions: LanguageModel.ProviderOptions,
    streamed: boolean
  ) =>
    Effect.gen(function*() {
      const n = ++sequence
      counts.requests++
      const request = simRequest(dialect, model, parameters, providerOptions)
      const inputTokens = countPrompt(request.prompt)
      const now = yield* Clock.currentTimeMillis
      const cache = promptCache === undefined
        ? PromptCache.noCacheUse
        : dialect === "openai"
        ? promptCache.openai(apiKey, model, request.prompt, now)
        : promptCache.anthropic(apiKey, model, breakpointOf(providerOptions.prompt), now)
      // Anthropic does not count input read from its cache against the input tokens per minute; OpenAI does.
      const admission = quotas.admit(
        dialect,
        apiKey,
        model,
        {
          inputTokens: dialect === "anthropic" ? inputTokens - cache.readTokens : inputTokens,
          maxOutputTokens: request.maxOutputTokens
        },
        now
      )
      const fault = plan.next(apiKey) ?? (admission._tag === "Limited" ? Core.quotaFault(admission) : undefined)
      const latency = plan.random().latencyMs
      if (latency !== undefined && latency > 0) yield* Effect.sleep(latency)
      const requestId = `req_inproc${n}`
      // In process, a fault with an error answer is that failure at the call (a mid-stream rate limit is a 429); the
      // others play out as a client sees them (see `playOut`): no answer, a late one, or a broken one.
      const atCall = { ...request, stream: false }
      const render = (f: Faults.Fault | Core.SimFault) =>
        dialect === "openai" ? OpenAiWire.faultError(f, atCall) : AnthropicWire.faultError(f, atCall, requestId)
      const faulted = fault !== undefined && fault.kind !== "cut_off" ? fault : undefined
      if (faulted !== undefined) {
        if (faulted.kind === "rate_limit" || faulted.kind === "stream_rate_limit") counts.limited++
        const error = render(faulted)
        if (error !== undefined) return yield* Effect.fail(toAiError(dialect, error))
        if (faulted.kind === "reset") return yield* Effect.fail(transportError(dialect, "read ECONNRESET"))
        if (faulted.kind === "hang" || (faulted.kind === "stall" && !streamed)) {
          // Held without a word until the simulator closes the connection (the caller's timeout comes first).
          yield* Effect.sleep(hangMs)
          return yield* Effect.fail(transportError(dialect, "socket hang up"))
        }
      }
      const answered = Core.respond(request, seed, inputTokens)
      if (answered._tag !== "Reply") {
        if (admission._tag === "Admitted") admission.settle(0, yield* Clock.currentTimeMillis)
        return yield* Effect.fail(toAiError(dialect, render(answered)!))
      }
      const outcome = { ...(fault?.kind === "cut_off" ? Core.cutOff(answered, request) : answered), cache }
      if (admission._tag === "Admitted") admission.settle(outcome.outputTokens, yield* Clock.currentTimeMillis)
      counts.inputTokens += outcome.inputTokens
      counts.outputTokens += outcome.outputTokens
      counts.requestedTokens += inputTokens + request.maxOutputTokens
      yield* options.onResponse === undefined
        ? Providers.reportHeaders(admission.headers)
        : options.onResponse(dialect, admission.headers)
      // The fault left to play out with the answer (a stream cut, late or broken), if any.
      return { outcome, fault: faulted, request }
    })

  return {
    plan,
    counts,
    languageModel: (dialect, model, parameters) =>
      LanguageModel.make({
        generateText: (providerOptions) =>
          Effect.flatMap(answer(dialect, model, parameters, providerOptions, false), ({ fault, outcome }) => {
            const parts = answerParts(dialect, outcome, forcedTool(providerOptions))
            if (fault === undefined) return Effect.succeed(parts)
            // The answer late, or half of its body (which the client cannot read).
            return fault.kind === "slow_first_token"
              ? Effect.as(Effect.sleep(hangMs), parts)
              : Effect.fail(unreadableError(dialect))
          }),
        streamText: (providerOptions) =>
          Stream.unwrap(
            Effect.map(
              answer(dialect, model, parameters, providerOptions, true),
              ({ fault, outcome, request }) => {
                const parts = streamParts(dialect, outcome, forcedTool(providerOptions))
                return fault === undefined
                  ? Stream.fromIterable(parts)
                  : playOut(dialect, fault, request, parts, hangMs)
              }
            )
          )
      })
  }
}

/** What a provider receives: the prompt, the output limit, the schema the answer must match, the effort. */
const simRequest = (
  dialect: Core.Dialect,
  model: string,
  parameters: Providers.ModelParameters,
  providerOptions: LanguageModel.ProviderOptions
): Core.SimRequest => {
  const responseFormat = providerOptions.responseFormat
  const tool = forcedTool(providerOptions)
  return {
    dialect,
    model,
    prompt: promptText(providerOptions.prompt),
    maxOutputTokens: parameters.maxOutputTokens,
    stream: false,
    ...(responseFormat.type === "json"
      ? { jsonSchema: Tool.getJsonSchemaFromSchemaAst(responseFormat.schema.ast) }
      : {}),
    ...(tool === undefined ? {} : { jsonSchema: Tool.getJsonSchemaFromSchemaAst(tool.parametersSchema.ast) }),
    ...(parameters.reasoningEffort === undefined ? {} : { reasoningEffort: parameters.reasoningEffort })
  }
}

/**
 * The finish part's usage as each client reports it: OpenAI counts cached input within `inputTokens`; Anthropic's
 * `inputTokens` leaves out what was read from the cache and written to it (the writes only in its metadata).
 */
const finish = (
  dialect: Core.Dialect,
  reply: Core.SimReply,
  reason: Response.FinishReason
): Response.FinishPartEncoded => {
  const read = reply.cache?.readTokens ?? 0
  const written = reply.cache?.writtenTokens ?? 0
  const inputTokens = dialect === "anthropic" ? reply.inputTokens - read - written : reply.inputTokens
  return {
    type: "finish",
    reason,
    usage: {
      inputTokens,
      outputTokens: reply.outputTokens,
      totalTokens: inputTokens + reply.outputTokens,
      ...(reply.reasoningTokens > 0 ? { reasoningTokens: reply.reasoningTokens } : {}),
      ...(read > 0 ? { cachedInputTokens: read } : {})
    },
    ...(dialect === "anthropic" && written > 0
      // The client keeps Anthropic's whole usage in the metadata; the engine reads the cache writes there.
      ? { metadata: { anthropic: { usage: { cache_creation_input_tokens: written } } } as never }
      : {})
  }
}

const reason = (dialect: Core.Dialect, reply: Core.SimReply, tool: Tool.Any | undefined): Response.FinishReason =>
  reply.stopReason === "max_tokens"
    ? "length"
    // The clients' mapping: Anthropic's `refusal` stop is a content filter's; OpenAI's refusal part ends normally.
    : reply.stopReason === "refusal"
    ? dialect === "anthropic" ? "content-filter" : "stop"
    : tool === undefined
    ? "stop"
    : "tool-calls"

/** OpenAI's refusal part, as its client passes it on: in a text part's metadata. */
const refusalMetadata = (reply: Core.SimReply) => ({ openai: { refusal: reply.text } }) as never

/** A forced tool's call, when the model wrote one whole. */
const called = (reply: Core.SimReply, tool: Tool.Any | undefined) => tool !== undefined && reply.object !== undefined

/** A whole answer: the forced tool's call (or the text), and its finish. */
const answerParts = (
  dialect: Core.Dialect,
  reply: Core.SimReply,
  tool: Tool.Any | undefined
): Array<Response.PartEncoded> => {
  const done = finish(dialect, reply, reason(dialect, reply, tool))
  if (reply.stopReason === "refusal") {
    return dialect === "openai" ? [{ type: "text", text: "", metadata: refusalMetadata(reply) }, done] : [done]
  }
  return [
    called(reply, tool)
      ? { type: "tool-call", id: "call_inproc", name: tool!.name, params: reply.object }
      : { type: "text", text: reply.text },
    done
  ]
}

/** A streamed answer: the forced tool's parameters in pieces (or the text), its call when whole, its finish. */
const streamParts = (
  dialect: Core.Dialect,
  reply: Core.SimReply,
  tool: Tool.Any | undefined
): Array<Response.StreamPartEncoded> => {
  const done = finish(dialect, reply, reason(dialect, reply, tool))
  if (reply.stopReason === "refusal") {
    return dialect === "openai"
      ? [{ type: "text-start", id: "t" }, { type: "text-end", id: "t", metadata: refusalMetadata(reply) }, done]
      : [done]
  }
  const parts: Array<Response.StreamPartEncoded> = tool === undefined
    ? Core.deltas(reply.text).map((delta) => ({ type: "text-delta" as const, id: "t", delta }))
    : [
      { type: "tool-params-start", id: "call_inproc", name: tool.name },
      ...Core.deltas(reply.text).map((delta) => ({ type: "tool-params-delta" as const, id: "call_inproc", delta })),
      { type: "tool-params-end", id: "call_inproc" },
      ...(called(reply, tool)
        ? [{ type: "tool-call" as const, id: "call_inproc", name: tool.name, params: reply.object }]
        : [])
    ]
  return [...parts, done]
}

/** The tool a call forces (`toolChoice: { tool }`), whose parameters the reply must match. */
const forcedTool = (options: LanguageModel.ProviderOptions): Tool.Any | undefined => {
  const choice = options.toolChoice
  return typeof choice === "object" && "tool" in choice
    ? options.tools.find((tool) => tool.name === choice.tool)
    : undefined
}
