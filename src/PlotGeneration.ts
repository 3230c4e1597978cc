/**
 * The plot generation service: validate, retrieve context, choose a model, build the prompt, call the model,
 * parse, and fall back to a template when the AI fails for good. `generateStream` reports every stage.
 *
 * @since 0.1.0
 */
import type * as AiError from "@effect/ai/AiError"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import {
  type GenerateOptions,
  type GenerationEvent,
  PlotOutline,
  PlotRequest,
  type PlotRequestInput,
  PlotResult,
  type ProjectContext,
  type ProviderName,
  type Stage,
  Usage
} from "./Domain.js"
import * as Errors from "./Errors.js"
import { validationError } from "./internal/validation.js"
import * as ModelCatalog from "./ModelCatalog.js"
import * as PromptBuilder from "./PromptBuilder.js"
import { Providers } from "./Providers.js"
import { ProjectContextStore } from "./ProjectContextStore.js"
import * as ResponseParser from "./ResponseParser.js"
import * as TemplateGenerator from "./TemplateGenerator.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Generates plot content for a request; a failure is one of the typed `GenerationError`s. */
  readonly generate: (
    request: PlotRequestInput,
    options?: GenerateOptions
  ) => Effect.Effect<PlotResult, Errors.GenerationError>
  /** The same generation, as the events of its progress, ending with `Completed`. */
  readonly generateStream: (
    request: PlotRequestInput,
    options?: GenerateOptions
  ) => Stream.Stream<GenerationEvent, Errors.GenerationError>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class PlotGeneration extends Context.Tag("plot-engine/PlotGeneration")<PlotGeneration, Service>() {}

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options {
  /** The models known to the engine (default `ModelCatalog.defaultCatalog`). */
  readonly catalog?: ModelCatalog.Catalog | undefined
}

/**
 * How far through a generation each stage is, for progress bars.
 *
 * @since 0.1.0
 * @category Events
 */
export const stageProgress: Readonly<Record<Stage, number>> = {
  retrieving_context: 10,
  selecting_model: 20,
  building_prompt: 30,
  generating: 40,
  parsing: 90
}

const stageMessages: Readonly<Record<Stage, string>> = {
  retrieving_context: "Gathering relevant project context...",
  selecting_model: "Choosing the model for this request...",
  building_prompt: "Preparing the request...",
  generating: "AI is generating your plot content...",
  parsing: "Reading the result..."
}

type Emit = (event: GenerationEvent) => Effect.Effect<void>

/** A model chosen for a request, with why. */
interface Selection {
  readonly model: ModelCatalog.ModelInfo
  readonly reasoning: string
}

/** What one call to a model produced. */
interface CallOutcome {
  readonly parsed: ResponseParser.ParsedPlot
  readonly usage: Usage
}

const decodeRequest = (input: PlotRequestInput): Effect.Effect<PlotRequest, Errors.RequestValidationError> =>
  Schema.decodeUnknown(PlotRequest)(input, { onExcessProperty: "error" }).pipe(
    Effect.mapError((error) => validationError(error))
  )

const usageOf = (usage: { readonly inputTokens?: number | undefined; readonly outputTokens?: number | undefined }) => {
  const inputTokens = usage.inputTokens ?? 0
  const outputTokens = usage.outputTokens ?? 0
  return new Usage({ inputTokens, outputTokens, totalTokens: inputTokens + outputTokens })
}

/**
 * Builds the service over the configured providers and project store.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const providers = yield* Providers
  const store = yield* ProjectContextStore
  const catalog = options.catalog ?? ModelCatalog.defaultCatalog

  const selectModel = (request: PlotRequest): Effect.Effect<Selection, Errors.ProviderNotConfiguredError | Errors.RequestValidationError> => {
    if (request.model !== undefined) {
      if (request.provider === undefined) {
        return Effect.fail(new Errors.RequestValidationError({ field: "provider", reason: "is required when a model is pinned" }))
      }
      const info = ModelCatalog.find(catalog, request.provider, request.model)
      return Effect.succeed({
        model: info._tag === "Some" ? info.value : ModelCatalog.unknownModel(request.provider, request.model),
        reasoning: "Model pinned by the request"
      })
    }
    const provider: ProviderName | undefined = request.provider ?? providers.configured[0]
    if (provider === undefined) return Effect.fail(new Errors.ProviderNotConfiguredError({ provider: "openai" }))
    if (!providers.configured.includes(provider)) return Effect.fail(new Errors.ProviderNotConfiguredError({ provider }))
    const info = ModelCatalog.forTier(catalog, provider, "balanced")
    return info._tag === "Some"
      ? Effect.succeed({
        model: info.value,
        reasoning: request.provider === undefined ? "Balanced model of the first configured provider" : "User preference"
      })
      : Effect.fail(new Errors.RequestValidationError({ field: "provider", reason: `has no model in the catalog` }))
  }

  const callModel = (
    model: LanguageModel.Service,
    selection: Selection,
    prompt: PromptBuilder.BuiltPrompt,
    request: PlotRequest,
    context: ProjectContext,
    emit: Emit | undefined
  ): Effect.Effect<CallOutcome, Errors.ProviderError | Errors.ResponseParseError> => {
    const classifyAt = (error: AiError.AiError) =>
      Effect.flatMap(Clock.currentTimeMillis, (nowMillis) =>
        Effect.fail(Errors.classify(error, { provider: selection.model.provider, model: selection.model.id, nowMillis })))
    if (emit === undefined) {
      return model.generateObject({ prompt: prompt.prompt, schema: PlotOutline, objectName: "plot_outline" }).pipe(
        Effect.catchAll(classifyAt),
        Effect.map((response) => ({
          parsed: ResponseParser.fromOutline(response.value, request, context),
          usage: usageOf(response.usage)
        }))
      )
    }
    return Effect.gen(function*() {
      let text = ""
      let usage: Usage | undefined
      yield* model.streamText({ prompt: prompt.prompt }).pipe(
        Stream.catchAll(classifyAt),
        Stream.runForEach((part): Effect.Effect<void, Errors.ProviderError> => {
          switch (part.type) {
            case "text-delta":
              text += part.delta
              return emit({ _tag: "TextDelta", delta: part.delta })
            case "finish":
              usage = usageOf(part.usage)
              return Effect.void
            case "error":
              return Effect.fail(
                Errors.classifyStreamError(part.error, { provider: selection.model.provider, model: selection.model.id })
              )
            default:
              return Effect.void
          }
        })
      )
      if (usage === undefined) {
        // The connection closed (or an undecodable error event was skipped) before the provider finished.
        return yield* new Errors.ServerError({
          provider: selection.model.provider,
          model: selection.model.id,
          detail: "the stream ended before the response was complete"
        })
      }
      yield* emit({ _tag: "Progress", stage: "parsing", message: stageMessages.parsing, progress: stageProgress.parsing })
      const parsed = yield* Either.match(ResponseParser.parseText(text, request, context), {
        onLeft: Effect.fail,
        onRight: Effect.succeed
      })
      return { parsed, usage }
    })
  }

  const run = Effect.fnUntraced(function*(input: PlotRequestInput, generateOptions: GenerateOptions, emit: Emit | undefined) {
    const progress = (stage: Stage) =>
      emit === undefined ? Effect.void : emit({ _tag: "Progress", stage, message: stageMessages[stage], progress: stageProgress[stage] })
    const startedAt = yield* Clock.currentTimeMillis
    const requestId = `gen_${(yield* Random.nextIntBetween(0, 2 ** 31)).toString(16).padStart(8, "0")}${
      (yield* Random.nextIntBetween(0, 2 ** 31)).toString(16).padStart(8, "0")
    }`
    const request = yield* decodeRequest(input)

    yield* progress("retrieving_context")
    const context = yield* store.get(request.projectId)

    const generated = Effect.gen(function*() {
      yield* progress("selecting_model")
      const selection = yield* selectModel(request)
      if (emit !== undefined) {
        yield* emit({
          _tag: "ModelSelected",
          provider: selection.model.provider,
          model: selection.model.id,
          reasoning: selection.reasoning
        })
      }

      yield* progress("building_prompt")
      const prompt = PromptBuilder.build(request, context, selection.model)

      yield* progress("generating")
      const model = yield* providers.languageModel(selection.model.provider, selection.model.id, {
        maxOutputTokens: prompt.maxOutputTokens,
        temperature: prompt.temperature
      })
      const outcome = yield* callModel(model, selection, prompt, request, context, emit)
      if (emit === undefined) yield* progress("parsing")
      const finishedAt = yield* Clock.currentTimeMillis
      return new PlotResult({
        requestId,
        content: outcome.parsed.content,
        outline: outcome.parsed.outline,
        provider: selection.model.provider,
        model: selection.model.id,
        reasoning: selection.reasoning,
        usage: outcome.usage,
        estimatedCostUsd: ModelCatalog.cost(selection.model, outcome.usage),
        retryCount: 0,
        warnings: outcome.parsed.warnings,
        isTemplate: false,
        durationMs: finishedAt - startedAt,
        wordCount: outcome.parsed.wordCount
      })
    })

    const useFallback = generateOptions.useFallback ?? true
    return yield* generated.pipe(
      Effect.catchIf(
        (error): error is Errors.ProviderError | Errors.ResponseParseError =>
          useFallback && (Errors.isTransient(error) || error._tag === "ResponseParseError"),
        (error) =>
          Effect.gen(function*() {
            yield* Effect.logWarning("Generation failed; using the template fallback").pipe(
              Effect.annotateLogs({ requestId, errorType: Errors.errorType(error), error: error.message })
            )
            const outline = TemplateGenerator.generate(request, context)
            const parsed = ResponseParser.fromOutline(outline, request, context)
            const finishedAt = yield* Clock.currentTimeMillis
            return new PlotResult({
              requestId,
              content: parsed.content,
              outline,
              provider: "template",
              model: "template",
              reasoning: `The AI failed (${Errors.errorType(error)}); the template fallback was used`,
              usage: Usage.zero,
              estimatedCostUsd: 0,
              retryCount: 0,
              warnings: [TemplateGenerator.templateWarning, Errors.userMessage(error), ...parsed.warnings],
              isTemplate: true,
              durationMs: finishedAt - startedAt,
              wordCount: parsed.wordCount
            })
          })
      )
    )
  })

  const generate = Effect.fn("PlotGeneration.generate")(
    (request: PlotRequestInput, options?: GenerateOptions) => run(request, options ?? {}, undefined)
  )

  const generateStream = (request: PlotRequestInput, options?: GenerateOptions) =>
    Stream.unwrapScoped(
      Effect.gen(function*() {
        const mailbox = yield* Mailbox.make<GenerationEvent, Errors.GenerationError>()
        yield* run(request, options ?? {}, (event) => Effect.asVoid(mailbox.offer(event))).pipe(
          Effect.flatMap((result) => mailbox.offer({ _tag: "Completed", result })),
          Effect.withSpan("PlotGeneration.generateStream"),
          Mailbox.into(mailbox),
          Effect.forkScoped
        )
        return Mailbox.toStream(mailbox)
      })
    )

  return PlotGeneration.of({ generate, generateStream })
})

/**
 * The service, over `Providers` and `ProjectContextStore`.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options = {}): Layer.Layer<PlotGeneration, never, Providers | ProjectContextStore> =>
  Layer.effect(PlotGeneration, make(options))
