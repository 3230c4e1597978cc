/**
 * One call to a model and what came of it: the outline asked for as a structured object, or as text streamed to
 * the caller and parsed at the end. Failures are the engine's tagged errors, classified from what the provider
 * sent.
 *
 * @internal
 */
import type * as AiError from "@effect/ai/AiError"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as Classify from "../internal/classify.js"
import type * as ModelCatalog from "../ModelCatalog.js"
import type * as PromptBuilder from "../PromptBuilder.js"
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

const usageOf = (usage: { readonly inputTokens?: number | undefined; readonly outputTokens?: number | undefined }) => {
  const inputTokens = usage.inputTokens ?? 0
  const outputTokens = usage.outputTokens ?? 0
  return new Domain.Usage({ inputTokens, outputTokens, totalTokens: inputTokens + outputTokens })
}

/** Fails with the engine's error for what the client reported, read at the time of the failure. */
const failClassified = (input: Input) => (error: AiError.AiError) =>
  Effect.flatMap(
    Clock.currentTimeMillis,
    (nowMillis) =>
      Effect.fail(Classify.classify(error, { provider: input.target.provider, model: input.target.id, nowMillis }))
  )

/** The outline as a structured object (the provider's JSON-schema output or forced tool), validated at once. */
export const structured = (
  model: LanguageModel.Service,
  input: Input
): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
  model.generateObject({
    prompt: input.prompt.prompt,
    schema: ResponseParser.structuredOutline,
    objectName: "plot_outline"
  })
    .pipe(
      Effect.catchAll(failClassified(input)),
      Effect.flatMap((response) =>
        Either.match(ResponseParser.parseStructured(response.value, response.text, input.request, input.context), {
          onLeft: Effect.fail,
          onRight: (parsed) => Effect.succeed({ parsed, usage: usageOf(response.usage) })
        })
      )
    )

/**
 * The outline as text, each piece told to the caller as it arrives, parsed once the provider finished. `written`
 * counts the characters received, so that a call cut off midway can still be accounted for; a stream that ends
 * before the provider's finish is a `ServerError`.
 */
export const streamed = (
  model: LanguageModel.Service,
  input: Input,
  emit: Engine.Emit,
  written: Ref.Ref<number>
): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
  model.streamText({ prompt: input.prompt.prompt }).pipe(
    Stream.catchAll(failClassified(input)),
    // This attempt's text only: a failed attempt's partial text never reaches the result.
    Stream.runFoldEffect(nothingReceived, (received, part): Effect.Effect<Received, Errors.ProviderError> => {
      switch (part.type) {
        case "text-delta": {
          const text = received.text + part.delta
          return Effect.as(
            Effect.zipRight(Ref.set(written, text.length), emit({ _tag: "TextDelta", delta: part.delta })),
            { text, usage: received.usage }
          )
        }
        case "finish":
          return Effect.succeed({ text: received.text, usage: usageOf(part.usage) })
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
    Effect.flatMap(({ text, usage }): Effect.Effect<Outcome, RetryPolicy.RetryableError> =>
      usage === undefined
        // The connection closed (or an undecodable error event was skipped) before the provider finished.
        ? Effect.fail(
          new Errors.ServerError({
            provider: input.target.provider,
            model: input.target.id,
            detail: "the stream ended before the response was complete"
          })
        )
        : Effect.zipRight(
          Engine.progress(emit, "parsing"),
          Either.match(ResponseParser.parseText(text, input.request, input.context), {
            onLeft: Effect.fail,
            onRight: (parsed) => Effect.succeed({ parsed, usage })
          })
        )
    )
  )

/** What a stream has delivered so far. */
interface Received {
  readonly text: string
  /** The usage the provider reported when it finished; `undefined` until then. */
  readonly usage: Domain.Usage | undefined
}

const nothingReceived: Received = { text: "", usage: undefined }
