/**
 * The plot generation service: validate, retrieve context, choose a model, build the prompt, call the model,
 * parse, and fall back to a template when the AI fails for good. `generateStream` reports every stage.
 *
 * @since 0.1.0
 */
import type * as AiError from "@effect/ai/AiError"
import type * as LanguageModel from "@effect/ai/LanguageModel"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
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
  ProjectContext,
  type Stage,
  Usage
} from "./Domain.js"
import * as ContextBudget from "./ContextBudget.js"
import * as Errors from "./Errors.js"
import { validationError } from "./internal/validation.js"
import * as ModelCatalog from "./ModelCatalog.js"
import * as ModelSelector from "./ModelSelector.js"
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
  /** The most tokens of project context sent (default `ContextBudget.defaultMaxContextTokens`, 32,000). */
  readonly maxContextTokens?: number | undefined
  /**
   * How to count tokens for an encoding model (see `ContextBudget.encodingModel`); default the real tokenizer.
   * Counts are cached by text either way.
   */
  readonly tokenCount?: ((encodingModel: string) => ContextBudget.Count) | undefined
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

const emptyContext = new ProjectContext({ characters: [], plotThreads: [], locations: [], worldBuilding: [], previousContent: [] })

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

  // Token counts, cached by text per encoding: repeated generations over a project do not re-tokenize it.
  const counters = new Map<string, ContextBudget.CachedCount>()
  const countFor = (encoding: string): ContextBudget.Count => {
    let counter = counters.get(encoding)
    if (counter === undefined) {
      counter = ContextBudget.cached(options.tokenCount?.(encoding) ?? ContextBudget.openAiCount(encoding))
      counters.set(encoding, counter)
    }
    return counter.count
  }
  // Claude's counts are estimated from o200k with a margin that each reported usage corrects.
  let anthropicFactor = ContextBudget.anthropicMargin
  const countForModel = (model: ModelCatalog.ModelInfo): ContextBudget.Count => {
    const count = countFor(ContextBudget.encodingModel(model))
    return model.provider === "anthropic" ? (text) => Math.ceil(count(text) * anthropicFactor) : count
  }
  const calibrate = (model: ModelCatalog.ModelInfo, estimatedInputTokens: number, usage: Usage) =>
    Effect.sync(() => {
      if (model.provider !== "anthropic" || usage.inputTokens === 0 || estimatedInputTokens === 0) return
      const observed = (usage.inputTokens / estimatedInputTokens) * anthropicFactor
      anthropicFactor = Math.min(2, Math.max(1, 0.7 * anthropicFactor + 0.3 * observed * 1.05))
    })

  const selectModel = (
    request: PlotRequest,
    contextTokens: number
  ): Effect.Effect<Selection, Errors.ProviderNotConfiguredError | Errors.RequestValidationError> => {
    if (request.model !== undefined) {
      if (request.provider === undefined) {
        return Effect.fail(new Errors.RequestValidationError({ field: "provider", reason: "is required when a model is pinned" }))
      }
      if (!providers.configured.includes(request.provider)) {
        return Effect.fail(new Errors.ProviderNotConfiguredError({ provider: request.provider }))
      }
      const info = ModelCatalog.find(catalog, request.provider, request.model)
      return Effect.succeed({
        model: Option.getOrElse(info, () => ModelCatalog.unknownModel(request.provider!, request.model!)),
        reasoning: "Model pinned by the request"
      })
    }
    if (request.provider !== undefined && !providers.configured.includes(request.provider)) {
      return Effect.fail(new Errors.ProviderNotConfiguredError({ provider: request.provider }))
    }
    const words = PromptBuilder.targetWords(request)
    const selection = ModelSelector.selectModel(
      {
        taskComplexity: ModelSelector.assessComplexity(request),
        targetWordCount: words,
        projectContext: contextTokens,
        userPreference: request.provider,
        costSensitive: request.costSensitive
      },
      { catalog, providers: providers.configured, outputTokens: PromptBuilder.expectedOutputTokens(words) }
    )
    return Option.match(selection, {
      onNone: () => Effect.fail(new Errors.ProviderNotConfiguredError({ provider: request.provider ?? "openai" })),
      onSome: (chosen) =>
        Effect.succeed({
          model: Option.getOrElse(
            ModelCatalog.find(catalog, chosen.provider, chosen.model),
            () => ModelCatalog.unknownModel(chosen.provider, chosen.model)
          ),
          reasoning: chosen.reasoning
        })
    })
  }

  /** Fits the context into the chosen model's budget and builds the prompt around it. */
  const prepare = (request: PlotRequest, context: ProjectContext, model: ModelCatalog.ModelInfo) => {
    const count = countForModel(model)
    const frame = PromptBuilder.build(request, emptyContext, model)
    const promptTokens = count(frame.system) + count(frame.user)
    const budget = ContextBudget.budgetFor(model, {
      maxOutputTokens: frame.maxOutputTokens,
      promptTokens,
      maxContextTokens: options.maxContextTokens
    })
    const fitted = ContextBudget.fit(context, budget, count)
    const prompt = PromptBuilder.build(request, fitted.context, model)
    const inputTokens = promptTokens + fitted.tokens
    const outputTokens = Math.min(prompt.maxOutputTokens, PromptBuilder.expectedOutputTokens(PromptBuilder.targetWords(request)))
    return { prompt, fitted, inputTokens, estimatedCostUsd: ModelCatalog.cost(model, { inputTokens, outputTokens }) }
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
      // Sized with o200k before a model is known: close enough to choose a window.
      const contextTokens = ContextBudget.measure(context, countFor("gpt-4o"))
      const selection = yield* selectModel(request, contextTokens)
      yield* progress("building_prompt")
      const prepared = prepare(request, context, selection.model)
      if (emit !== undefined) {
        yield* emit({
          _tag: "ModelSelected",
          provider: selection.model.provider,
          model: selection.model.id,
          reasoning: selection.reasoning,
          estimatedCostUsd: prepared.estimatedCostUsd
        })
        for (const message of prepared.fitted.warnings) yield* emit({ _tag: "Warning", message })
      }
      const prompt = prepared.prompt

      yield* progress("generating")
      const model = yield* providers.languageModel(selection.model.provider, selection.model.id, {
        maxOutputTokens: prompt.maxOutputTokens,
        temperature: prompt.temperature
      })
      const outcome = yield* callModel(model, selection, prompt, request, prepared.fitted.context, emit)
      yield* calibrate(selection.model, prepared.inputTokens, outcome.usage)
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
        preCallEstimateUsd: prepared.estimatedCostUsd,
        retryCount: 0,
        warnings: [...prepared.fitted.warnings, ...outcome.parsed.warnings],
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
              preCallEstimateUsd: null,
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

/**
 * The service configured from the environment: `PLOT_ENGINE_MAX_CONTEXT_TOKENS` (default 32,000) and the
 * catalog of `ModelCatalog.load` (`PLOT_ENGINE_MODELS_FILE`, `PLOT_ENGINE_MODELS`).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig: Layer.Layer<
  PlotGeneration,
  ConfigError.ConfigError | Errors.RequestValidationError,
  Providers | ProjectContextStore | FileSystem.FileSystem
> = Layer.effect(
  PlotGeneration,
  Effect.gen(function*() {
    const maxContextTokens = yield* Config.integer("PLOT_ENGINE_MAX_CONTEXT_TOKENS").pipe(
      Config.validate({ message: "must be a positive number of tokens", validation: (n) => n > 0 }),
      Config.withDefault(ContextBudget.defaultMaxContextTokens)
    )
    const catalog = yield* ModelCatalog.load()
    return yield* make({ catalog, maxContextTokens })
  })
)
