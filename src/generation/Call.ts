/**
 * One call to a model and what came of it. Every call forces the outline tool, streamed or not: OpenAI enforces the
 * outline's JSON Schema on the reply (a strict function call), Anthropic is asked to follow it (a forced tool use,
 * not enforced); the reply is validated either way.
 * A streamed call tells the caller each part of the outline as it completes (and its Markdown), never JSON
 * fragments. Failures are the engine's tagged errors, classified from what the provider sent; an answer that
 * stopped at its output limit before the outline was written is an `IncompleteResponseError`.
 *
 * @internal
 */
import type * as AiError from "@effect/ai/AiError"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import type * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Stream from "effect/Stream"
import * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as Classify from "../internal/classify.js"
import * as OutlineStream from "../internal/outlineStream.js"
import * as StreamPull from "../internal/streamPull.js"
import * as Timeout from "../internal/timeout.js"
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
 * reported (an answer it billed, even one that could not be used). Written by the call as it reads (a stream at
 * each chunk), read by the attempt once the call ended: plain fields, as no two fibers write them.
 */
export interface Tally {
  written: number
  billed: Domain.Usage | undefined
  /** Whether a part of the outline reached the caller: the stream is committed, and a failure now restarts it. */
  shown: boolean
}

/** A call that has received nothing yet (made as the attempt runs, one per call). */
export const newTally = (): Tally => ({ written: 0, billed: undefined, shown: false })

/**
 * How long a stream may take, in milliseconds: how long it may be silent before it begins writing (`firstToken`)
 * and once it has (`idle`), and how long the whole call may take (`total`: the attempt timeout, or the time left
 * before the deadline), with the error that ends it then.
 */
export interface StreamLimits {
  readonly firstToken: number | undefined
  readonly idle: number | undefined
  /**
   * The least a stream must write before it is committed (see `Activity.committed`): `tokensPerSecond` over each
   * `windowMillis` from its first written part (tokens counted as four characters).
   */
  readonly throughput?: { readonly tokensPerSecond: number; readonly windowMillis: number } | undefined
  readonly total: number
  readonly onTotal: () => Errors.TimeoutError
}

/**
 * What the watchdog of a stream sees: when it began, when a part last arrived, whether it is writing yet and
 * whether it is committed (a part of the outline reached the caller), and what it wrote in the window it measures.
 */
export interface Activity {
  readonly startedAt: number
  lastPartAt: number
  writing: boolean
  committed: boolean
  /** Characters written so far, and when the throughput window began and how many had been written then. */
  received: number
  windowStartAt: number
  windowStartReceived: number
  /** When the provider said it finished (its usage came), if it has: all that is left is the body's end. */
  finishedAt: number | undefined
}

/** A stream's activity as it starts at `now`. */
export const startActivity = (now: number): Activity => ({
  startedAt: now,
  lastPartAt: now,
  writing: false,
  committed: false,
  received: 0,
  windowStartAt: now,
  windowStartReceived: 0,
  finishedAt: undefined
})

/** The limit a stream reaches first, given what it has done: when, and which. */
export interface NextLimit {
  readonly at: number
  readonly limit: "total" | "first-token" | "idle" | "throughput" | "close"
}

/**
 * How long a stream whose provider finished may keep its body open. The clients read a stream to the body's end (so
 * that its connection is kept for the next call), which a provider sends at once; a body still open this long
 * after the provider finished is given up, and the call ends as finished, not failed.
 */
export const closeGraceMillis = 1_000

/**
 * When a stream's next limit falls: its silence limit from its last part, the end of its throughput window (while
 * it writes and is not committed), or the whole call's, whichever first. Once the provider finished, all that is
 * left is the body's end: the next limit is then `close`, `closeGraceMillis` after the finish (or the whole call's,
 * when sooner), and reaching it ends the call as finished.
 */
export const nextLimit = (limits: StreamLimits, activity: Activity): NextLimit => {
  const next = nextLimitUnfinished(limits, activity)
  return activity.finishedAt === undefined
    ? next
    : { at: Math.min(next.at, activity.finishedAt + closeGraceMillis), limit: "close" }
}

const nextLimitUnfinished = (limits: StreamLimits, activity: Activity): NextLimit => {
  let next: NextLimit = { at: activity.startedAt + limits.total, limit: "total" }
  const silence = activity.writing ? limits.idle : limits.firstToken
  if (silence !== undefined && activity.lastPartAt + silence < next.at) {
    next = { at: activity.lastPartAt + silence, limit: activity.writing ? "idle" : "first-token" }
  }
  if (limits.throughput !== undefined && activity.writing && !activity.committed) {
    const at = activity.windowStartAt + limits.throughput.windowMillis
    if (at < next.at) next = { at, limit: "throughput" }
  }
  return next
}

/** Whether a stream wrote too little in its throughput window to go on. */
export const crawls = (throughput: NonNullable<StreamLimits["throughput"]>, activity: Activity): boolean =>
  (activity.received - activity.windowStartReceived) / 4 < (throughput.tokensPerSecond * throughput.windowMillis) / 1000

/**
 * How long the watchdog may sleep before it looks again, `wait` being the time to the next limit. A part only moves
 * the limits later, except the first written part, which brings the idle limit and the throughput window in (they
 * may fall before the first-token limit), and the provider's finish, which brings the close in: it looks again at
 * least that often (before writing, within the idle limit and the throughput window; always within the close's
 * grace, a timer a second for a stream that is not done).
 */
export const recheckAfter = (limits: StreamLimits, activity: Activity, wait: number): number =>
  activity.writing
    ? Math.min(wait, closeGraceMillis)
    : Math.min(wait, closeGraceMillis, limits.idle ?? Infinity, limits.throughput?.windowMillis ?? Infinity)

/** What an answer held when it ended. */
interface Answer {
  /** The outline tool's parameters, when the model called it whole. */
  readonly params: unknown
  /** The JSON of the tool call as it was streamed (empty when not streamed). */
  readonly json: string
  /** Text the model wrote beside (or instead of) the tool call. */
  readonly text: string
  readonly finishReason: Response.FinishReason | undefined
  /** OpenAI's explanation, when the answer was a refusal part. */
  readonly refusal: string | undefined
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
 * (`cache_creation_input_tokens`, in the finish part's metadata) come on top. The counts are made whole and not
 * negative here, so that the result needs no second check (a constructor's check cost 15 µs a call).
 */
const usageOf = (provider: Domain.ProviderName, usage: Response.Usage, metadata: unknown) => {
  const cachedInputTokens = tokens(usage.cachedInputTokens)
  const cacheWriteTokens = provider === "anthropic" ? tokens(anthropicCacheWrites(metadata)) : 0
  const inputTokens = tokens(usage.inputTokens) + (provider === "anthropic" ? cachedInputTokens + cacheWriteTokens : 0)
  const outputTokens = tokens(usage.outputTokens)
  return new Domain.Usage({
    inputTokens,
    outputTokens,
    totalTokens: inputTokens + outputTokens,
    ...(usage.reasoningTokens === undefined ? {} : { reasoningTokens: tokens(usage.reasoningTokens) }),
    ...(cachedInputTokens > 0 ? { cachedInputTokens } : {}),
    ...(cacheWriteTokens > 0 ? { cacheWriteTokens } : {})
  }, true)
}

/** A count of tokens as reported: a whole number, 0 when missing or nonsense (negative, or past any real count). */
const tokens = (reported: number | undefined): number => {
  const count = reported !== undefined && reported > 0 ? Math.round(reported) : 0
  return Number.isSafeInteger(count) ? count : 0
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
      tally.billed = usage
      return outcomeOf(input, {
        params: response.toolCalls[0]?.params,
        json: "",
        text: response.text,
        finishReason: response.finishReason,
        refusal: response.content.reduce<string | undefined>(
          (found, part) => found ?? (part.type === "text" ? refusalIn(part.metadata) : undefined),
          undefined
        ),
        usage
      })
    })
  )

/**
 * The outline as it is written: each part told to the caller as it completes (`OutlineHeading`, `ActStarted`,
 * `BeatWritten`, and its Markdown as a `TextDelta`), validated once the provider finished. The `tally` counts the
 * characters received and keeps the usage reported, so that a call that fails can still be accounted for; a
 * stream that ends before the provider's finish is a `ServerError`. One watchdog per stream enforces its `limits`
 * (a `TimeoutError`); the parts are read a chunk at a time, with no effect per part, in a fiber that starts with
 * `locals` (see `Timeout.watch`).
 */
export const streamed = (
  model: LanguageModel.Service,
  input: Input,
  emit: Engine.Emit,
  tally: Tally,
  limits: StreamLimits,
  locals: ReadonlyArray<Timeout.Local>
): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
  Effect.clockWith((clock) => {
    const now = () => clock.unsafeCurrentTimeMillis()
    const activity = startActivity(now())
    // This attempt's outline only: a failed attempt's parts never reach the result.
    const scan = OutlineStream.make()
    let params: unknown = undefined
    let json = ""
    let text = ""
    let finishReason: Response.FinishReason | undefined
    let refusal: string | undefined
    let usage: Domain.Usage | undefined
    // A `response.failed` that did not say why: the `error` event that says it may follow (Azure sends it next).
    let failedWithoutCause: unknown = undefined
    const classifyEvent = (event: unknown) =>
      Classify.classifyStreamError(event, { provider: input.target.provider, model: input.target.id, nowMillis: now() })
    const read = (chunk: Chunk.Chunk<Response.StreamPart<any>>): Effect.Effect<void, Errors.ProviderError> => {
      activity.lastPartAt = now()
      let pieces: Array<OutlineStream.OutlinePiece> | undefined
      let wrote = false
      let finished = false
      let failure: Errors.ProviderError | undefined
      for (const part of chunk) {
        if (!activity.writing && writes(part)) {
          activity.writing = true
          activity.windowStartAt = activity.lastPartAt
        }
        if (part.type === "tool-params-delta" || part.type === "text-delta") {
          // A model that writes the outline as text (a gateway that drops tools) is read the same way.
          if (part.type === "tool-params-delta") json += part.delta
          else text += part.delta
          activity.received += part.delta.length
          wrote = true
          for (const piece of scan(part.delta)) (pieces ??= []).push(piece)
        } else if (part.type === "tool-call") {
          params = part.params
        } else if (part.type === "text-end") {
          refusal ??= refusalIn(part.metadata)
        } else if (part.type === "finish") {
          usage = usageOf(input.target.provider, part.usage, part.metadata)
          finishReason = part.reason
          finished = true
          activity.finishedAt = activity.lastPartAt
        } else if (part.type === "error" && activity.finishedAt === undefined) {
          if (failedWithoutCause === undefined && isFailedWithoutCause(part.error)) {
            failedWithoutCause = part.error
            continue
          }
          failure = classifyEvent(part.error)
          break
        }
      }
      if (wrote) tally.written = json.length + text.length
      if (finished) tally.billed = usage
      if (pieces !== undefined) {
        activity.committed = true
        tally.shown = true
      }
      // Only the parts of the outline completed are told; most chunks complete none.
      const told = pieces === undefined
        ? Effect.void
        : emit.all(pieces.flatMap((piece) => eventsOf(piece, input.request.kind)))
      return failure === undefined ? told : Effect.zipRight(told, Effect.fail(failure))
    }
    // The stream's watchdog: what its limits say of it now (see `nextLimit`).
    const watchdog = (): Timeout.Verdict<Errors.TimeoutError> => {
      const next = nextLimit(limits, activity)
      const wait = next.at - now()
      if (wait > 0) return { _tag: "Wait", millis: recheckAfter(limits, activity, wait) }
      if (next.limit === "close") return { _tag: "End" }
      // A throughput window that ends with enough written starts the next one.
      if (next.limit === "throughput" && !crawls(limits.throughput!, activity)) {
        activity.windowStartAt = now()
        activity.windowStartReceived = activity.received
        return watchdog()
      }
      return { _tag: "Fail", error: limitError(input, limits, next.limit) }
    }
    // Past the provider's finish only the body's end was left: the answer is whole, whatever cut the rest. Classified
    // before the call's fiber ends: a fiber that ends with the client's error (which may quote a key) is logged by the
    // runtime as it is, at debug level.
    const answer = Stream.catchAll(
      model.streamText(callOptions(input)),
      (error) => activity.finishedAt === undefined ? failClassified(input)(error) : Stream.empty
    )
    return Timeout.watch(StreamPull.forEachChunk(answer, read), watchdog, locals, limits.total).pipe(
      Effect.flatMap((): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
        usage === undefined
          // The connection closed (or an undecodable error event was skipped) before the provider finished: the
          // failure it announced without a cause, if any, is all there is to go on.
          ? Effect.fail(
            failedWithoutCause === undefined
              ? new Errors.ServerError({
                provider: input.target.provider,
                model: input.target.id,
                detail: "the stream ended before the response was complete"
              })
              : classifyEvent(failedWithoutCause)
          )
          : Effect.zipRight(
            Engine.progress(emit, "parsing"),
            outcomeOf(input, { params, json, text, finishReason, refusal, usage })
          )
      )
    )
  })

/**
 * An OpenAI `response.failed` whose `response.error` is `null` (the client passes the whole event on then). Azure's
 * Responses API sends one ahead of the `error` event that says why (a rate limit, with its code): the failure is
 * classified from that one.
 */
const isFailedWithoutCause = (error: unknown): boolean =>
  typeof error === "object" && error !== null && (error as { readonly type?: unknown }).type === "response.failed"

/** Parts that show the answer is being written (not the response's metadata, which comes before any thinking). */
const writes = (part: Response.StreamPart<any>): boolean =>
  part.type !== "response-metadata" && part.type !== "text-start" && part.type !== "reasoning-start"

/**
 * The error of a limit reached: the whole call's (`limits.onTotal`), or silence before the stream began writing
 * (`firstToken`) or once it had (`idle`). A gateway's keep-alives carry no part, so a stream that only keeps alive
 * times out like one that sends nothing.
 */
const limitError = (
  input: Input,
  limits: StreamLimits,
  reached: Exclude<NextLimit["limit"], "close">
): Errors.TimeoutError =>
  reached === "total" ? limits.onTotal() : new Errors.TimeoutError({
    provider: input.target.provider,
    model: input.target.id,
    kind: reached,
    detail: reached === "idle"
      ? `the stream went silent for ${limits.idle} ms`
      : reached === "throughput"
      ? `the stream wrote less than ${limits.throughput!.tokensPerSecond} tokens a second over ${
        limits.throughput!.windowMillis
      } ms before anything could be shown`
      : `the stream wrote nothing for ${limits.firstToken} ms`
  })

/**
 * The events that tell the caller a part of the outline is complete: the part, and its Markdown (headed as the kind
 * reads it).
 */
const eventsOf = (
  piece: OutlineStream.OutlinePiece,
  kind: Domain.ContentKind | undefined
): readonly [Domain.GenerationEvent, Domain.GenerationEvent] => {
  switch (piece._tag) {
    case "Heading":
      return [
        { _tag: "OutlineHeading", title: piece.title, logline: piece.logline },
        { _tag: "TextDelta", delta: ResponseParser.renderHeading(piece.title, piece.logline) }
      ]
    case "Act":
      return [
        { _tag: "ActStarted", act: piece.act, title: piece.title, summary: piece.summary },
        { _tag: "TextDelta", delta: ResponseParser.renderAct(piece.act, piece.title, piece.summary, kind) }
      ]
    case "Beat":
      return [
        {
          _tag: "BeatWritten",
          act: piece.act,
          beat: piece.beat,
          summary: piece.summary,
          characters: piece.characters,
          location: piece.location
        },
        { _tag: "TextDelta", delta: ResponseParser.renderBeat(piece) }
      ]
  }
}

/**
 * The outline an answer holds: the tool call's parameters, validated; else the JSON streamed or the text
 * written. When there is none to be had and the answer stopped at its output limit, an `IncompleteResponseError`
 * (an answer cut off may still hold a whole outline: then it is taken).
 */
const outcomeOf = (input: Input, answer: Answer): Effect.Effect<Outcome, RetryPolicy.RetryableError> => {
  const usage = answer.usage ?? Domain.Usage.zero
  const declined = refusalOf(input, answer)
  if (declined !== undefined) return Effect.fail(declined)
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

/**
 * OpenAI's refusal part, as `@effect/ai-openai` passes it on: a text part (streamed: the text's end) whose
 * metadata carries the model's explanation.
 */
const refusalIn = (metadata: unknown): string | undefined => {
  const refusal = (metadata as { openai?: { refusal?: unknown } } | undefined)?.openai?.refusal
  return typeof refusal === "string" ? refusal : undefined
}

/**
 * A refusal in an answer: OpenAI's refusal part (its explanation), or an answer stopped by a content filter
 * (Anthropic's `stop_reason: "refusal"`, OpenAI's `incomplete_details.reason: "content_filter"`), whatever it wrote
 * before: a model stopped halfway by its safety system has not written an outline to take.
 */
const refusalOf = (input: Input, answer: Answer): Errors.RefusalError | undefined => {
  if (answer.refusal === undefined && answer.finishReason !== "content-filter") return undefined
  const reason = answer.refusal ?? (input.target.provider === "anthropic" ? "refusal" : "content_filter")
  return new Errors.RefusalError({
    provider: input.target.provider,
    model: input.target.id,
    kind: "answer",
    reason,
    shouldRetry: false,
    detail: answer.refusal === undefined
      ? `the answer was stopped by the provider's content filter (${reason})`
      : `the model declined: ${reason}`
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
