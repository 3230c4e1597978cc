/**
 * One call to a model and what came of it. Every call forces the outline tool, so that the provider enforces the
 * outline's JSON Schema on the reply, streamed or not: OpenAI as a strict function call, Anthropic as a tool use.
 * A streamed call tells the caller each part of the outline as it completes (and its Markdown), never JSON
 * fragments. Failures are the engine's tagged errors, classified from what the provider sent; an answer that
 * stopped at its output limit before the outline was written is an `IncompleteResponseError`.
 *
 * @internal
 */
import type * as AiError from "@effect/ai/AiError"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as Classify from "../internal/classify.js"
import * as OutlineStream from "../internal/outlineStream.js"
import type * as ModelCatalog from "../ModelCatalog.js"
import * as PromptBuilder from "../PromptBuilder.js"
import * as ResponseParser from "../ResponseParser.js"
import type * as RetryPolicy from "../RetryPolicy.js"
import * as Engine from "./Engine.js"

/** What one call to a model produced. */
export interface Outcome {
  readonly parsed: ResponseParser.ParsedPlot
  readonly usage: Domain.Usage
}

/** What a call needs besides the model: what to send, and what the reply is checked against. */
export interface Input {
  readonly target: ModelCatalog.ModelInfo
  readonly prompt: PromptBuilder.BuiltPrompt
  readonly request: Domain.PlotRequest
  /** The context the prompt was built over (the fitted one), for the quality warnings. */
  readonly context: Domain.ProjectContext
}

/**
 * What a call has received so far, kept when it fails: the characters written, and the usage the provider
 * reported (an answer it billed, even one that could not be used).
 */
export interface Tally {
  readonly written: Ref.Ref<number>
  readonly billed: Ref.Ref<Domain.Usage | undefined>
}

/** A call that has received nothing yet. */
export const makeTally: Effect.Effect<Tally> = Effect.map(
  Effect.all([Ref.make(0), Ref.make<Domain.Usage | undefined>(undefined)]),
  ([written, billed]) => ({ written, billed })
)

/** How long a stream may be silent, in milliseconds: before it begins writing, and once it has. */
export interface StreamTimeouts {
  readonly firstToken: number | undefined
  readonly idle: number | undefined
}

/** What an answer held when it ended. */
interface Answer {
  /** The outline tool's parameters, when the model called it whole. */
  readonly params: unknown
  /** The JSON of the tool call as it was streamed (empty when not streamed). */
  readonly json: string
  /** Text the model wrote beside (or instead of) the tool call. */
  readonly text: string
  readonly finishReason: Response.FinishReason | undefined
  /** The usage the provider reported when it finished; `undefined` until then. */
  readonly usage: Domain.Usage | undefined
}

/** The options of every call: the outline tool forced, and its call returned rather than run. */
const callOptions = (input: Input) => ({
  prompt: input.prompt.prompt,
  toolkit: ResponseParser.outlineToolkit,
  toolChoice: { tool: "plot_outline" } as const,
  disableToolCallResolution: true
})

/**
 * The usage a provider billed, every input token in `inputTokens` as OpenAI counts them. Anthropic counts only the
 * input after the last cache breakpoint: what it read from the cache (`cachedInputTokens`) and what it wrote to it
 * (`cache_creation_input_tokens`, in the finish part's metadata) come on top.
 */
const usageOf = (provider: Domain.ProviderName, usage: Response.Usage, metadata: unknown) => {
  const cachedInputTokens = usage.cachedInputTokens ?? undefined
  const cacheWriteTokens = provider === "anthropic" ? anthropicCacheWrites(metadata) : undefined
  const inputTokens = (usage.inputTokens ?? 0) +
    (provider === "anthropic" ? (cachedInputTokens ?? 0) + (cacheWriteTokens ?? 0) : 0)
  const outputTokens = usage.outputTokens ?? 0
  return new Domain.Usage({
    inputTokens,
    outputTokens,
    totalTokens: inputTokens + outputTokens,
    ...(usage.reasoningTokens === undefined ? {} : { reasoningTokens: usage.reasoningTokens }),
    ...(cachedInputTokens ? { cachedInputTokens } : {}),
    ...(cacheWriteTokens ? { cacheWriteTokens } : {})
  })
}

const anthropicCacheWrites = (metadata: unknown): number | undefined => {
  const written = (metadata as { anthropic?: { usage?: { cache_creation_input_tokens?: unknown } } } | undefined)
    ?.anthropic?.usage?.cache_creation_input_tokens
  return typeof written === "number" && written > 0 ? written : undefined
}

/**
 * Fails with the engine's error for what the client reported, read at the time of the failure. A tool call whose
 * arguments are not JSON was cut off at the output limit (the provider enforces the schema on what it finishes):
 * both clients report it as malformed output, and it is an `IncompleteResponseError`.
 */
const failClassified = (input: Input) => (error: AiError.AiError) =>
  error._tag === "MalformedOutput" && /tool call parameters/.test(error.description ?? "")
    ? Effect.fail(incomplete(input, cutOff(input)))
    : Effect.flatMap(
      Clock.currentTimeMillis,
      (nowMillis) =>
        Effect.fail(Classify.classify(error, { provider: input.target.provider, model: input.target.id, nowMillis }))
    )

/** What an answer cut off at its limit used, when the client failed before the provider's usage: the whole limit. */
const cutOff = (input: Input) =>
  new Domain.Usage({
    inputTokens: 0,
    outputTokens: input.prompt.maxOutputTokens,
    totalTokens: input.prompt.maxOutputTokens
  })

/** The outline at once: the tool call of a whole answer, validated. */
export const structured = (
  model: LanguageModel.Service,
  input: Input,
  tally: Tally
): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
  model.generateText(callOptions(input)).pipe(
    Effect.catchAll(failClassified(input)),
    Effect.flatMap((response) => {
      const finish = response.content.find((part) => part.type === "finish")
      const usage = usageOf(input.target.provider, response.usage, finish?.metadata)
      return Effect.zipRight(
        Ref.set(tally.billed, usage),
        outcomeOf(input, {
          params: response.toolCalls[0]?.params,
          json: "",
          text: response.text,
          finishReason: response.finishReason,
          usage
        })
      )
    })
  )

/**
 * The outline as it is written: each part told to the caller as it completes (`OutlineHeading`, `ActStarted`,
 * `BeatWritten`, and its Markdown as a `TextDelta`), validated once the provider finished. The `tally` counts the
 * characters received and keeps the usage reported, so that a call that fails can still be accounted for; a stream that ends before the
 * provider's finish is a `ServerError`.
 */
export const streamed = (
  model: LanguageModel.Service,
  input: Input,
  emit: Engine.Emit,
  tally: Tally,
  timeouts: StreamTimeouts
): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
  Effect.suspend(() => {
    // This attempt's outline only: a failed attempt's parts never reach the result.
    const scan = OutlineStream.make()
    const show = (delta: string, received: Answer) =>
      Effect.zipRight(
        Ref.set(tally.written, received.json.length + received.text.length),
        Effect.forEach(scan(delta), (piece) => announce(emit, piece, input.request.kind), { discard: true })
      )
    return model.streamText(callOptions(input)).pipe(
      Stream.catchAll(failClassified(input)),
      silenceLimited(input, timeouts),
      Stream.runFoldEffect(nothingYet, (received, part): Effect.Effect<Answer, Errors.ProviderError> => {
        switch (part.type) {
          case "tool-params-delta": {
            const next = { ...received, json: received.json + part.delta }
            return Effect.as(show(part.delta, next), next)
          }
          case "text-delta": {
            const next = { ...received, text: received.text + part.delta }
            // A model that writes the outline as text (a gateway that drops tools) is read the same way.
            return Effect.as(show(part.delta, next), next)
          }
          case "tool-call":
            return Effect.succeed({ ...received, params: part.params })
          case "finish": {
            const usage = usageOf(input.target.provider, part.usage, part.metadata)
            return Effect.as(Ref.set(tally.billed, usage), { ...received, finishReason: part.reason, usage })
          }
          case "error":
            return Effect.flatMap(Clock.currentTimeMillis, (nowMillis) =>
              Effect.fail(
                Classify.classifyStreamError(part.error, {
                  provider: input.target.provider,
                  model: input.target.id,
                  nowMillis
                })
              ))
          default:
            return Effect.succeed(received)
        }
      }),
      Effect.flatMap((received): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
        received.usage === undefined
          // The connection closed (or an undecodable error event was skipped) before the provider finished.
          ? Effect.fail(
            new Errors.ServerError({
              provider: input.target.provider,
              model: input.target.id,
              detail: "the stream ended before the response was complete"
            })
          )
          : Effect.zipRight(Engine.progress(emit, "parsing"), outcomeOf(input, received))
      )
    )
  })

/** Parts that show the answer is being written (not the response's metadata, which comes before any thinking). */
const writes = (part: Response.StreamPart<any>): boolean =>
  part.type !== "response-metadata" && part.type !== "text-start" && part.type !== "reasoning-start"

/**
 * Fails a stream with a `TimeoutError` when it is silent too long: before its first written part
 * (`timeouts.firstToken`), then between parts (`timeouts.idle`). A gateway's keep-alives carry no part, so a
 * stream that only keeps alive times out like one that sends nothing.
 */
const silenceLimited = (input: Input, timeouts: StreamTimeouts) =>
<A extends Response.StreamPart<any>, E, R>(
  parts: Stream.Stream<A, E, R>
): Stream.Stream<A, E | Errors.TimeoutError, R> => {
  if (timeouts.firstToken === undefined && timeouts.idle === undefined) return parts
  const silent = (what: string, millis: number): Option.Option<E | Errors.TimeoutError> =>
    Option.some(
      new Errors.TimeoutError({
        provider: input.target.provider,
        model: input.target.id,
        detail: `the stream ${what} for ${millis} ms`
      })
    )
  return Stream.unwrapScoped(Effect.map(Stream.toPull(parts), (pull) => {
    let writing = false
    const next = Effect.suspend((): Effect.Effect<Chunk.Chunk<A>, Option.Option<E | Errors.TimeoutError>, R> => {
      const limit = writing ? timeouts.idle : timeouts.firstToken
      const timed = limit === undefined ? pull : pull.pipe(
        Effect.timeoutFail({
          duration: limit,
          onTimeout: () => silent(writing ? "went silent" : "wrote nothing", limit)
        })
      )
      return Effect.tap(timed, (chunk) => {
        if (!writing && Chunk.some(chunk, writes)) writing = true
      })
    })
    return Stream.repeatEffectChunkOption(next)
  }))
}

const nothingYet: Answer = { params: undefined, json: "", text: "", finishReason: undefined, usage: undefined }

/** Tells the caller a part of the outline is complete: the part, and its Markdown (headed as the kind reads it). */
const announce = (
  emit: Engine.Emit,
  piece: OutlineStream.OutlinePiece,
  kind: Domain.ContentKind | undefined
): Effect.Effect<void> => {
  switch (piece._tag) {
    case "Heading":
      return Effect.zipRight(
        emit({ _tag: "OutlineHeading", title: piece.title, logline: piece.logline }),
        emit({ _tag: "TextDelta", delta: ResponseParser.renderHeading(piece.title, piece.logline) })
      )
    case "Act":
      return Effect.zipRight(
        emit({ _tag: "ActStarted", act: piece.act, title: piece.title, summary: piece.summary }),
        emit({ _tag: "TextDelta", delta: ResponseParser.renderAct(piece.act, piece.title, piece.summary, kind) })
      )
    case "Beat":
      return Effect.zipRight(
        emit({
          _tag: "BeatWritten",
          act: piece.act,
          beat: piece.beat,
          summary: piece.summary,
          characters: piece.characters,
          location: piece.location
        }),
        emit({ _tag: "TextDelta", delta: ResponseParser.renderBeat(piece) })
      )
  }
}

/**
 * The outline an answer holds: the tool call's parameters, validated; else the JSON streamed or the text
 * written. When there is none to be had and the answer stopped at its output limit, an `IncompleteResponseError`
 * (an answer cut off may still hold a whole outline: then it is taken).
 */
const outcomeOf = (input: Input, answer: Answer): Effect.Effect<Outcome, RetryPolicy.RetryableError> => {
  const usage = answer.usage ?? Domain.Usage.zero
  const written = answer.json || answer.text
  const read: Either.Either<ResponseParser.ParsedPlot, RetryPolicy.RetryableError> = answer.params !== undefined
    ? ResponseParser.parseStructured(answer.params, written, input.request, input.context)
    : ResponseParser.parseText(written, input.request, input.context)
  const parsed = Either.isLeft(read) && answer.finishReason === "length" ? Either.left(incomplete(input, usage)) : read
  return Either.match(parsed, {
    onLeft: (error) => Effect.fail(error),
    onRight: (plot) => Effect.succeed({ parsed: plot, usage })
  })
}

/** The answer stopped at its output limit: billed, and not worth the same request again. */
const incomplete = (input: Input, usage: Domain.Usage): Errors.IncompleteResponseError => {
  const { prompt, target } = input
  const hidden = usage.reasoningTokens === undefined ? "" : `, ${usage.reasoningTokens} of them hidden reasoning`
  return new Errors.IncompleteResponseError({
    provider: target.provider,
    model: target.id,
    maxOutputTokens: prompt.maxOutputTokens,
    outputTokens: usage.outputTokens,
    ...(usage.reasoningTokens === undefined ? {} : { reasoningTokens: usage.reasoningTokens }),
    // The same request again would fail the same way: only a larger limit or less reasoning may help.
    shouldRetry: PromptBuilder.afterIncomplete(target, prompt) !== undefined,
    detail:
      `the answer stopped at its output limit of ${prompt.maxOutputTokens} tokens (${usage.outputTokens} written${hidden})`
  })
}
