/**
 * Fakes for unit tests: a scripted `LanguageModel` and the `AiError`s the real clients produce.
 */
import * as AiError from "@effect/ai/AiError"
import * as LanguageModel from "@effect/ai/LanguageModel"
import type * as Response from "@effect/ai/Response"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import { PlotAct, PlotBeat, PlotOutline } from "../../src/Domain.js"
import type { ModelParameters } from "../../src/Providers.js"

/** What one scripted call answers: text (JSON or prose), an error, or an error event mid-stream. */
export type Answer =
  | { readonly _tag: "Text"; readonly text: string; readonly inputTokens?: number; readonly outputTokens?: number }
  /** The error, at once or `afterMs` later (streamed: before any part). */
  | { readonly _tag: "Fail"; readonly error: AiError.AiError; readonly afterMs?: number }
  | { readonly _tag: "StreamError"; readonly partial: string; readonly event: unknown }
  /** Streamed: these parts as the client makes them, each array a network chunk (not streamed: a hang). */
  | { readonly _tag: "Parts"; readonly chunks: ReadonlyArray<ReadonlyArray<Response.StreamPartEncoded>> }
  /** No answer at all. */
  | { readonly _tag: "Hang" }
  /** A defect in the client (a bug, not a provider's answer). */
  | { readonly _tag: "Die"; readonly defect: unknown }
  /**
   * Streamed: the response's metadata at once, the first half of the text after `firstAfterMs`, the rest
   * `gapMs` later (not streamed: the text after both).
   */
  | { readonly _tag: "Slow"; readonly text: string; readonly firstAfterMs: number; readonly gapMs: number }
  /** Streamed: `charsPerSecond` characters of the text each second, from the first second (not streamed: a hang). */
  | { readonly _tag: "Crawl"; readonly text: string; readonly charsPerSecond: number }
  /**
   * Streamed: the text and its finish at once, then a body that never ends, or a transport error in place of its end
   * (not streamed: the text).
   */
  | { readonly _tag: "Unclosed"; readonly text: string; readonly end: "never" | "transport error" }

export const text = (value: string, usage?: { inputTokens: number; outputTokens: number }): Answer => ({
  _tag: "Text",
  text: value,
  ...usage
})
export const fail = (error: AiError.AiError, afterMs?: number): Answer =>
  afterMs === undefined ? { _tag: "Fail", error } : { _tag: "Fail", error, afterMs }
export const die = (defect: unknown): Answer => ({ _tag: "Die", defect })
export const parts = (...chunks: ReadonlyArray<ReadonlyArray<Response.StreamPartEncoded>>): Answer => ({
  _tag: "Parts",
  chunks
})
export const unclosed = (value: string, end: "never" | "transport error" = "never"): Answer => ({
  _tag: "Unclosed",
  text: value,
  end
})
export const crawl = (value: string, charsPerSecond: number): Answer => ({ _tag: "Crawl", text: value, charsPerSecond })
export const slow = (value: string, firstAfterMs: number, gapMs: number): Answer => ({
  _tag: "Slow",
  text: value,
  firstAfterMs,
  gapMs
})

/** A call the fake model received. */
export interface Call {
  /** When the call was made, on the Clock. */
  readonly at: number
  readonly model: string
  readonly parameters: ModelParameters
  readonly prompt: unknown
  readonly streamed: boolean
}

/**
 * A language model that answers from a script, one answer per call (the last repeats), and records calls.
 */
export const scripted =
  (answers: ReadonlyArray<Answer>, calls: Array<Call> = []) => (model: string, parameters: ModelParameters) =>
    LanguageModel.make({
      generateText: (options) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) => {
          calls.push({ at, model, parameters, prompt: options.prompt, streamed: false })
          const answer = answers[Math.min(calls.length - 1, answers.length - 1)]!
          switch (answer._tag) {
            case "Fail":
              return Effect.delay(Effect.fail(answer.error), answer.afterMs ?? 0)
            case "Die":
              return Effect.die(answer.defect)
            case "StreamError":
              return Effect.fail(httpError(500, answer.event))
            case "Hang":
            case "Crawl":
            case "Parts":
              return Effect.never
            case "Slow":
            case "Text":
            case "Unclosed":
              return Effect.succeed<Array<Response.PartEncoded>>([
                { type: "text", text: answer.text },
                finish(
                  "inputTokens" in answer ? answer.inputTokens ?? 100 : 100,
                  "outputTokens" in answer ? answer.outputTokens ?? 50 : 50
                )
              ]).pipe(Effect.delay(answer._tag === "Slow" ? answer.firstAfterMs + answer.gapMs : 0))
          }
        }),
      streamText: (options) =>
        Stream.unwrap(Effect.map(Clock.currentTimeMillis, (at) => {
          calls.push({ at, model, parameters, prompt: options.prompt, streamed: true })
          const answer = answers[Math.min(calls.length - 1, answers.length - 1)]!
          switch (answer._tag) {
            case "Fail":
              return Stream.fromEffect(Effect.delay(Effect.fail(answer.error), answer.afterMs ?? 0))
            case "Die":
              return Stream.die(answer.defect)
            case "Hang":
              return Stream.never
            case "Crawl": {
              const pieces = Math.ceil(answer.text.length / answer.charsPerSecond)
              return Stream.range(0, pieces - 1).pipe(
                Stream.mapEffect((i) =>
                  Effect.delay(
                    Effect.succeed<Response.StreamPartEncoded>({
                      type: "text-delta",
                      id: "t",
                      delta: answer.text.slice(i * answer.charsPerSecond, (i + 1) * answer.charsPerSecond)
                    }),
                    1_000
                  )
                ),
                Stream.concat(Stream.make(finish(100, 50)))
              )
            }
            case "StreamError":
              return Stream.make<Array<Response.StreamPartEncoded>>(
                { type: "text-delta", id: "t", delta: answer.partial },
                { type: "error", error: answer.event }
              )
            case "Parts":
              return Stream.fromChunks(...answer.chunks.map((chunk) => Chunk.fromIterable(chunk)))
            case "Slow": {
              const half = Math.floor(answer.text.length / 2)
              return Stream.make<Array<Response.StreamPartEncoded>>({ type: "response-metadata", modelId: model }).pipe(
                Stream.concat(Stream.fromEffect(Effect.delay(
                  Effect.succeed<Response.StreamPartEncoded>({
                    type: "text-delta",
                    id: "t",
                    delta: answer.text.slice(0, half)
                  }),
                  answer.firstAfterMs
                ))),
                Stream.concat(Stream.fromEffect(Effect.delay(
                  Effect.succeed<Response.StreamPartEncoded>({
                    type: "text-delta",
                    id: "t",
                    delta: answer.text.slice(half)
                  }),
                  answer.gapMs
                ))),
                Stream.concat(Stream.make(finish(100, 50)))
              )
            }
            case "Text": {
              const half = Math.floor(answer.text.length / 2)
              return Stream.make<Array<Response.StreamPartEncoded>>(
                { type: "text-delta", id: "t", delta: answer.text.slice(0, half) },
                { type: "text-delta", id: "t", delta: answer.text.slice(half) },
                finish(answer.inputTokens ?? 100, answer.outputTokens ?? 50)
              )
            }
            case "Unclosed":
              return Stream.make<Array<Response.StreamPartEncoded>>(
                { type: "text-delta", id: "t", delta: answer.text },
                finish(100, 50)
              ).pipe(Stream.concat(answer.end === "never" ? Stream.never : Stream.fail(transportError())))
          }
        }))
    })

const finish = (inputTokens: number, outputTokens: number) => ({
  type: "finish" as const,
  reason: "stop" as const,
  usage: { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens }
})

/** The `HttpResponseError` the real clients produce for a status, body and headers. */
export const httpError = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new AiError.HttpResponseError({
    module: "OpenAiClient",
    method: "createResponse",
    reason: "StatusCode",
    request: { method: "POST", url: "http://gateway/v1/responses", urlParams: [], hash: Option.none(), headers: {} },
    response: { status, headers: { "content-type": "application/json", ...headers } },
    body: JSON.stringify(body, null, 2)
  })

/** A transport failure (connection refused or reset). */
export const transportError = () =>
  new AiError.HttpRequestError({
    module: "OpenAiClient",
    method: "createResponse",
    reason: "Transport",
    request: { method: "POST", url: "http://gateway/v1/responses", urlParams: [], hash: Option.none(), headers: {} },
    description: "connect ECONNREFUSED 127.0.0.1:1"
  })

/** A valid outline naming the sample project's people and places. */
export const sampleOutline = new PlotOutline({
  title: "The Lamp Beneath",
  logline: "Mara Quinn must decide whether to renew the bargain with the sea.",
  acts: [
    new PlotAct({
      title: "Setup",
      summary: "The light fails and Mara Quinn finds the blue cloth.",
      beats: [
        new PlotBeat({
          summary: "Mara Quinn climbs to the lamp room.",
          characters: ["Mara Quinn"],
          location: "Saltmarsh Light"
        }),
        new PlotBeat({
          summary: "Elias Thorne asks why the light failed.",
          characters: ["Elias Thorne"],
          location: "Saltmarsh Light"
        })
      ]
    })
  ]
})

export const sampleOutlineJson = JSON.stringify(sampleOutline)
