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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Exit from "effect/Exit"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import {
  type GenerateOptions,
  GenerationMetrics,
  type GenerationEvent,
  PlotRequest,
  type PlotRequestInput,
  PlotResult,
  ProjectContext,
  type ProviderName,
  type Stage,
  Usage
} from "./Domain.js"
import * as Alerts from "./Alerts.js"
import * as CircuitBreaker from "./CircuitBreaker.js"
import * as ContextBudget from "./ContextBudget.js"
import * as Errors from "./Errors.js"
import { validationError } from "./internal/validation.js"
import * as ModelCatalog from "./ModelCatalog.js"
import * as ModelSelector from "./ModelSelector.js"
import * as PromptBuilder from "./PromptBuilder.js"
import * as ProviderRateLimiter from "./ProviderRateLimiter.js"
import * as RetryPolicy from "./RetryPolicy.js"
import { Providers } from "./Providers.js"
import { ProjectContextStore } from "./ProjectContextStore.js"
import * as ResponseParser from "./ResponseParser.js"
import * as Telemetry from "./Telemetry.js"
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
   * Counts of the project's texts and of the prompt's fixed parts are remembered either way.
   */
  readonly tokenCount?: ((encodingModel: string) => ContextBudget.Count) | undefined
  /** Retries, budgets and deadline (default `RetryPolicy.defaults`, the seed's table). */
  readonly retryPolicy?: RetryPolicy.Policy | undefined
  /** The circuit breaker per model (default 10 consecutive failures, 30 seconds). */
  readonly circuitBreaker?: CircuitBreaker.Options | undefined
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

/** A prompt made for one model: the fitted context, its size and its expected cost. */
interface Prepared {
  readonly prompt: PromptBuilder.BuiltPrompt
  readonly fitted: ContextBudget.Fitted
  /** The prompt without the project context, in tokens. */
  readonly promptTokens: number
  readonly inputTokens: number
  readonly estimatedCostUsd: number | null
}

/** The model a step of the fallback chain calls. */
class ChainStep extends Context.Tag("plot-engine/PlotGeneration/ChainStep")<ChainStep, {
  readonly index: number
  readonly model: ModelCatalog.ModelInfo
}>() {}

/** What one generation's chain has done so far. */
interface ChainRun {
  attempts: number
  lastStep: number
  lastError: Errors.ProviderError | Errors.ResponseParseError | undefined
  /** Rate-limit errors met, for the alerts. */
  rateLimitErrors: number
  /** The context budget for a model's retry after it rejected a prompt as too long. */
  readonly reduced: Map<string, number>
  readonly warnings: Array<string>
}

const modelKey = (model: Pick<ModelCatalog.ModelInfo, "provider" | "id">) => `${model.provider}/${model.id}`

const noEvents: Emit = () => Effect.void

/** Token counts of one encoding: `remembered` for texts that come again, `once` for a request's own. */
interface Counter {
  readonly remembered: ContextBudget.Count
  readonly once: ContextBudget.Count
}

/** The text a streamed call has received so far. */
interface Received {
  text: string
}

/** What one call to a model produced. */
interface CallOutcome {
  readonly parsed: ResponseParser.ParsedPlot
  readonly usage: Usage
}

/**
 * A result with its seed-style metrics, derived from it once. Its parts are already valid (the outline was
 * decoded or built by the template), so the constructors skip validating them again: that took 100 µs.
 */
const makeResult = (
  fields: Omit<PlotResult, "metrics">,
  { errorType, rateLimitErrors }: { readonly errorType?: Errors.ErrorType; readonly rateLimitErrors: number }
): PlotResult =>
  new PlotResult({
    ...fields,
    metrics: new GenerationMetrics({
      requestDurationMs: fields.durationMs,
      promptTokens: fields.usage.inputTokens,
      completionTokens: fields.usage.outputTokens,
      totalTokens: fields.usage.totalTokens,
      wordCount: fields.wordCount,
      warnings: fields.warnings.length,
      isTemplate: fields.isTemplate,
      retryCount: fields.retryCount,
      rateLimitErrors,
      ...(errorType === undefined ? {} : { errorType }),
      modelUsed: fields.model,
      estimatedCostUSD: fields.estimatedCostUsd
    }, true)
  }, true)

const decodePlotRequest = Schema.decodeUnknownEither(PlotRequest, { onExcessProperty: "error" })

const decodeRequest = (input: PlotRequestInput): Either.Either<PlotRequest, Errors.RequestValidationError> =>
  Either.mapLeft(decodePlotRequest(input), (error) => validationError(error))

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
  const policy = options.retryPolicy ?? RetryPolicy.defaults
  const attemptTimeoutMillis = Duration.toMillis(policy.attemptTimeout)
  const deadlineMillis = Duration.toMillis(policy.deadline)
  const breaker = yield* CircuitBreaker.make(options.circuitBreaker)
  const rateLimiter = yield* Effect.serviceOption(ProviderRateLimiter.ProviderRateLimiter)
  const alerts = yield* Effect.serviceOption(Alerts.Alerts)

  // Token counts per encoding: the project's texts and the prompt's fixed parts are remembered, so that repeated
  // generations over a project do not re-tokenize them; the writer's words are counted once and forgotten (they
  // will not come again, and thousands of them would only fill the cache).
  const counters = new Map<string, Counter>()
  const countFor = (encoding: string): Counter => {
    let counter = counters.get(encoding)
    if (counter === undefined) {
      const once = options.tokenCount?.(encoding) ?? ContextBudget.openAiCount(encoding)
      counter = { remembered: ContextBudget.cached(once).count, once }
      counters.set(encoding, counter)
    }
    return counter
  }
  // Claude's counts are estimated from o200k with a margin that each reported usage corrects. The margin moves
  // in steps of 0.01; each step's counts are made once.
  let anthropicFactor = ContextBudget.anthropicMargin
  const scaledCounters = new Map<string, Counter>()
  const countForModel = (model: ModelCatalog.ModelInfo): Counter => {
    const encoding = ContextBudget.encodingModel(model)
    const counter = countFor(encoding)
    if (model.provider !== "anthropic") return counter
    const key = `${encoding}:${anthropicFactor}`
    let scaled = scaledCounters.get(key)
    if (scaled === undefined) {
      const factor = anthropicFactor
      scaled = {
        remembered: (text) => Math.ceil(counter.remembered(text) * factor),
        once: (text) => Math.ceil(counter.once(text) * factor)
      }
      scaledCounters.set(key, scaled)
    }
    return scaled
  }
  const calibrate = (model: ModelCatalog.ModelInfo, estimatedInputTokens: number, usage: Usage) =>
    model.provider !== "anthropic" ? Effect.void : Effect.sync(() => {
      if (usage.inputTokens === 0 || estimatedInputTokens === 0) return
      const observed = (usage.inputTokens / estimatedInputTokens) * anthropicFactor
      const next = Math.min(2, Math.max(1, 0.7 * anthropicFactor + 0.3 * observed * 1.05))
      anthropicFactor = Math.round(next * 100) / 100
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

  /** Fits the context into a model's budget (or the reduced one of a retry) and builds the prompt around it. */
  const prepare = (
    request: PlotRequest,
    context: ProjectContext,
    model: ModelCatalog.ModelInfo,
    reducedBudget: number | undefined
  ): Prepared => {
    const counter = countForModel(model)
    // The prompt without the project, to size what is left for it: only the writer's words are new (counting
    // text costs more on a busy server than in a loop: the tokenizer's table is large and falls out of the
    // CPU's caches).
    const sizing = PromptBuilder.sizing(request)
    const promptTokens = counter.remembered(sizing.shared[0]) + counter.remembered(sizing.shared[1]) + counter.once(sizing.own)
    const words = PromptBuilder.targetWords(request)
    const maxOutputTokens = PromptBuilder.maxOutputTokensFor(words, model)
    const budget = ContextBudget.budgetFor(model, { maxOutputTokens, promptTokens, maxContextTokens: options.maxContextTokens })
    const fitted = ContextBudget.fit(context, Math.min(budget, reducedBudget ?? budget), counter.remembered)
    const prompt = PromptBuilder.build(request, fitted.context, model)
    const inputTokens = promptTokens + fitted.tokens
    const outputTokens = Math.min(maxOutputTokens, PromptBuilder.expectedOutputTokens(words))
    return { prompt, fitted, promptTokens, inputTokens, estimatedCostUsd: ModelCatalog.cost(model, { inputTokens, outputTokens }) }
  }

  /**
   * One call to a model: structured output, or a stream of text parsed at the end (`received` holds what a
   * stream has written so far, for the rate limiter when the call fails midway).
   */
  const callModel = (
    model: LanguageModel.Service,
    target: ModelCatalog.ModelInfo,
    prompt: PromptBuilder.BuiltPrompt,
    request: PlotRequest,
    context: ProjectContext,
    emit: Emit | undefined,
    received: Received
  ): Effect.Effect<CallOutcome, Errors.ProviderError | Errors.ResponseParseError> => {
    const classifyAt = (error: AiError.AiError) =>
      Effect.flatMap(Clock.currentTimeMillis, (nowMillis) =>
        Effect.fail(Errors.classify(error, { provider: target.provider, model: target.id, nowMillis })))
    if (emit === undefined) {
      return model.generateObject({ prompt: prompt.prompt, schema: ResponseParser.structuredOutline, objectName: "plot_outline" }).pipe(
        Effect.catchAll(classifyAt),
        Effect.flatMap((response) =>
          Either.match(ResponseParser.parseStructured(response.value, response.text, request, context), {
            onLeft: Effect.fail,
            onRight: (parsed) => Effect.succeed({ parsed, usage: usageOf(response.usage) })
          })
        )
      )
    }
    return Effect.gen(function*() {
      // Text of this attempt only: a failed attempt's partial text never reaches the result.
      received.text = ""
      let usage: Usage | undefined
      yield* model.streamText({ prompt: prompt.prompt }).pipe(
        Stream.catchAll(classifyAt),
        Stream.runForEach((part): Effect.Effect<void, Errors.ProviderError> => {
          switch (part.type) {
            case "text-delta":
              received.text += part.delta
              return emit({ _tag: "TextDelta", delta: part.delta })
            case "finish":
              usage = usageOf(part.usage)
              return Effect.void
            case "error":
              return Effect.fail(Errors.classifyStreamError(part.error, { provider: target.provider, model: target.id }))
            default:
              return Effect.void
          }
        })
      )
      if (usage === undefined) {
        // The connection closed (or an undecodable error event was skipped) before the provider finished.
        return yield* new Errors.ServerError({
          provider: target.provider,
          model: target.id,
          detail: "the stream ended before the response was complete"
        })
      }
      yield* emit({ _tag: "Progress", stage: "parsing", message: stageMessages.parsing, progress: stageProgress.parsing })
      const parsed = yield* Either.match(ResponseParser.parseText(received.text, request, context), {
        onLeft: Effect.fail,
        onRight: Effect.succeed
      })
      return { parsed, usage }
    })
  }

  /**
   * The whole fallback chain for a selection: the first attempt, then, only if it fails, an `ExecutionPlan`
   * with a step per model and one retry schedule shared by every step (so retries never multiply across hops);
   * one attempt budget and one deadline over all of it. A generation that succeeds at once builds neither the
   * plan nor the schedule, and runs under one timer (its attempt's, cut to the deadline when that is nearer).
   */
  const runChain = Effect.fnUntraced(function*(
    request: PlotRequest,
    selection: Selection,
    prepareFor: (model: ModelCatalog.ModelInfo, reducedBudget: number | undefined) => Prepared,
    emit: Emit,
    streaming: boolean
  ) {
    const chain = request.model === undefined
      ? ModelSelector.fallbackChain(selection.model, { catalog, providers: providers.configured })
      : [selection.model]
    const run: ChainRun = { attempts: 0, lastStep: -1, lastError: undefined, rateLimitErrors: 0, reduced: new Map(), warnings: [] }
    const deadlineAt = (yield* Clock.currentTimeMillis) + deadlineMillis
    const pastDeadline = (target: ModelCatalog.ModelInfo) =>
      new Errors.TimeoutError({
        provider: target.provider,
        model: target.id,
        detail: `the generation did not finish within its deadline of ${Duration.format(policy.deadline)}`
      })
    const lastTarget = () => chain[Math.max(0, run.lastStep)]!

    const attemptOn = (step: ChainStep["Type"]) => Effect.gen(function*() {
      const target = step.model
      const key = modelKey(target)
      if (run.lastStep !== -1 && run.lastStep !== step.index) {
        const from = modelKey(chain[run.lastStep]!)
        const reason = run.lastError === undefined ? "failure" : Errors.errorType(run.lastError)
        run.warnings.push(`Fell back from ${from} to ${key} after ${reason}.`)
        yield* emit({ _tag: "Fallback", from, to: key, reason })
      }
      run.lastStep = step.index
      // A model whose circuit is open is skipped without spending an attempt: the chain hops on at once.
      if (!(yield* breaker.tryAcquire(key))) {
        return yield* new Errors.ServerError({
          provider: target.provider,
          model: target.id,
          shouldRetry: false,
          detail: "skipped: its circuit breaker is open"
        })
      }
      run.attempts++
      const prepared = prepareFor(target, run.reduced.get(key))
      yield* Effect.annotateCurrentSpan({
        "gen_ai.system": target.provider,
        "gen_ai.request.model": target.id,
        "gen_ai.request.max_tokens": prepared.prompt.maxOutputTokens,
        ...(prepared.prompt.temperature === undefined ? {} : { "gen_ai.request.temperature": prepared.prompt.temperature }),
        "plot_engine.attempt": run.attempts
      })
      // The prompt goes in the message, not in the log annotations: annotations live in a FiberRef whose every
      // update compares (hashes) them, and hashing a 100 KB prompt twice cost a millisecond per attempt. Only
      // built at debug level.
      yield* Effect.whenLogLevel(
        Effect.logDebug("Prompt", { system: prepared.prompt.system, user: prepared.prompt.user }),
        LogLevel.Debug
      )
      if (run.attempts === 1) {
        for (const message of prepared.fitted.warnings) yield* emit({ _tag: "Warning", message })
      }
      // The chain holds configured providers only (selection checked them), so this cannot fail.
      const languageModel = yield* providers.languageModel(target.provider, target.id, {
        maxOutputTokens: prepared.prompt.maxOutputTokens,
        temperature: prepared.prompt.temperature
      }).pipe(Effect.orDie)
      // The call's timer starts once admitted (a wait for quota is not the provider's slowness), and is cut to
      // the deadline when that comes first (`remaining`, the time left then).
      const received: Received = { text: "" }
      const call = (remaining: number) =>
        callModel(languageModel, target, prepared.prompt, request, prepared.fitted.context, streaming ? emit : undefined, received).pipe(
          Effect.timeoutFail({
            duration: Math.min(attemptTimeoutMillis, remaining),
            onTimeout: () =>
              remaining < attemptTimeoutMillis ? pastDeadline(target) : new Errors.TimeoutError({
                provider: target.provider,
                model: target.id,
                detail: `no answer within the attempt timeout of ${Duration.format(policy.attemptTimeout)}`
              })
          }),
          Effect.onExit((exit) => Telemetry.recordProviderCall({ provider: target.provider, model: target.id }, exit))
        )
      const outcome = yield* admitted(target, prepared, call, received, deadlineAt, pastDeadline).pipe(
        Effect.tapError((error) => onAttemptFailure(run, target, prepared, error, emit)),
        Effect.onInterrupt(() => breaker.release(key))
      )
      yield* breakerEvent(target, yield* breaker.onSuccess(key), emit)
      yield* calibrate(target, prepared.inputTokens, outcome.usage)
      yield* Effect.annotateCurrentSpan({
        "gen_ai.usage.input_tokens": outcome.usage.inputTokens,
        "gen_ai.usage.output_tokens": outcome.usage.outputTokens
      })
      return { outcome, model: target, prepared }
    })
    // One span per attempt, with the GenAI semantic-convention attributes; its logs (the model's own too) say
    // which model.
    const attempt = (step: ChainStep["Type"]) =>
      attemptOn(step).pipe(
        Effect.annotateLogs({ provider: step.model.provider, model: step.model.id }),
        Effect.withSpan("PlotGeneration.attempt", { captureStackTrace: false })
      )

    /** The rest of the chain after the first attempt failed: retries and hops, until the deadline. */
    const afterFailure = (firstFailure: RetryPolicy.RetryableError) =>
      Effect.gen(function*() {
        const retries = yield* RetryPolicy.make(policy, Effect.sync(() => run.attempts < policy.maxAttempts))
        const schedule = retries.pipe(
          Schedule.tapOutput((retry) => {
            const error = retry.error
            const target = "provider" in error ? `${error.provider}/${error.model}` : modelKey(lastTarget())
            const [provider, model] = target.split("/") as [ProviderName, string]
            return emit({
              _tag: "Retrying",
              provider,
              model,
              errorType: Errors.errorType(error),
              message: Errors.userMessage(error),
              attempt: run.attempts + 1,
              delayMs: Duration.toMillis(retry.delay)
            })
          })
        )
        // A hop starts at once (`Schedule.once` lets the previous step's failure through without a delay), then
        // follows the shared schedule; `while` decides whether a step may run at all after that failure.
        const step = (model: ModelCatalog.ModelInfo, index: number) => ({
          provide: Layer.succeed(ChainStep, { index, model }),
          schedule: index === 0 ? schedule : Schedule.andThen(Schedule.once, schedule),
          while: (error: RetryPolicy.RetryableError) => canRunOn(model, error, run)
        })
        const [first, ...rest] = chain
        const plan = ExecutionPlan.make(step(first!, 0), ...rest.map((model, i) => step(model, i + 1)))
        // The plan's first step starts from the first attempt's failure (it has already run), so that the
        // schedule decides on it exactly as if the plan had made that attempt itself.
        let replay: RetryPolicy.RetryableError | undefined = firstFailure
        const planned = Effect.suspend(() => {
          if (replay === undefined) return Effect.flatMap(ChainStep, attempt)
          const failure = replay
          replay = undefined
          return Effect.fail(failure)
        })
        const remaining = deadlineAt - (yield* Clock.currentTimeMillis)
        return yield* planned.pipe(
          Effect.withExecutionPlan(plan),
          Effect.timeoutFail({ duration: Math.max(0, remaining), onTimeout: () => pastDeadline(lastTarget()) })
        )
      })

    const done = yield* attempt({ index: 0, model: chain[0]! }).pipe(
      Effect.catchAll(afterFailure),
      Effect.mapError((error) => ({ error, run }))
    )
    return { ...done, run }
  })

  /** Whether a step may run (or keep retrying) after a failure: fail fast, hop on, or skip a model. */
  const canRunOn = (model: ModelCatalog.ModelInfo, error: RetryPolicy.RetryableError, run: ChainRun) =>
    Effect.gen(function*() {
      if (run.attempts >= policy.maxAttempts) return false
      if ((yield* breaker.state(modelKey(model))) === "open") return false
      switch (error._tag) {
        case "AuthError":
        case "InvalidRequestError":
          return false
        case "QuotaExhaustedError":
          // Waiting cannot help, and the same provider's other models share its quota.
          return error.provider !== model.provider
        case "ContextTooLongError": {
          if (error.provider === model.provider && error.model === model.id) return true
          const failed = ModelCatalog.find(catalog, error.provider, error.model)
          return Option.match(failed, { onNone: () => true, onSome: (f) => model.contextWindow > f.contextWindow })
        }
        default:
          return true
      }
    })

  /**
   * A call through the rate limiter, when one is provided: admitted with the estimate (prompt tokens and the
   * output limit) no later than the deadline, reconciled however it ends (the reported usage; when it failed or
   * was cut off, the prompt and what a stream had written, about four characters a token); a provider 429
   * pauses every caller of the key. A call that would start at the deadline is not sent, and gives its whole
   * reservation back.
   */
  const admitted = (
    target: ModelCatalog.ModelInfo,
    prepared: Prepared,
    call: (remaining: number) => Effect.Effect<CallOutcome, Errors.ProviderError | Errors.ResponseParseError>,
    received: Received,
    deadlineAt: number,
    pastDeadline: (target: ModelCatalog.ModelInfo) => Errors.TimeoutError
  ): Effect.Effect<CallOutcome, Errors.ProviderError | Errors.ResponseParseError> => {
    // Sends the call with the time left, or, at the deadline, does `notSent` instead and fails.
    const whileTimeLeft = (
      notSent: Effect.Effect<void>,
      send: (remaining: number) => Effect.Effect<CallOutcome, Errors.ProviderError | Errors.ResponseParseError>
    ) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        now >= deadlineAt ? Effect.zipRight(notSent, Effect.fail(pastDeadline(target))) : send(deadlineAt - now))
    return Option.match(rateLimiter, {
      onNone: () => whileTimeLeft(Effect.void, call),
      onSome: (limiter) => {
        const limiterTarget = { provider: target.provider, model: target.id }
        return Effect.scoped(Effect.gen(function*() {
          const admission = yield* limiter.admit(limiterTarget, {
            inputTokens: prepared.inputTokens,
            outputTokens: prepared.prompt.maxOutputTokens
          }, { until: deadlineAt }).pipe(
            Effect.catchTag("TimeoutError", () => Effect.fail(pastDeadline(target))),
            Effect.withSpan("ProviderRateLimiter.admit", { captureStackTrace: false })
          )
          return yield* whileTimeLeft(admission.cancel, (remaining) =>
            call(remaining).pipe(
              Effect.onExit((exit) =>
                admission.reconcile(
                  Exit.isSuccess(exit)
                    ? { inputTokens: exit.value.usage.inputTokens, outputTokens: exit.value.usage.outputTokens }
                    : { inputTokens: prepared.inputTokens, outputTokens: ContextBudget.estimateTokens(received.text) }
                )
              )
            ))
        })).pipe(
          Effect.tapError((error) =>
            error instanceof Errors.RateLimitError && !error.local
              ? limiter.pause(limiterTarget, error.retryAfterMs ?? 1_000)
              : Effect.void
          )
        )
      }
    })
  }

  /** Books a failed attempt: the breaker, the reduced context after a context-length rejection, the error. */
  const onAttemptFailure = (
    run: ChainRun,
    target: ModelCatalog.ModelInfo,
    prepared: Prepared,
    error: Errors.ProviderError | Errors.ResponseParseError,
    emit: Emit
  ) =>
    Effect.gen(function*() {
      run.lastError = error
      if (error._tag === "RateLimitError") run.rateLimitErrors++
      yield* Telemetry.recordError(error)
      if (error._tag === "ContextTooLongError") {
        run.reduced.set(
          modelKey(target),
          ContextBudget.reducedBudget({
            sentContextTokens: prepared.fitted.tokens,
            promptTokens: prepared.promptTokens,
            maxOutputTokens: prepared.prompt.maxOutputTokens,
            maxContextTokens: error.maxContextTokens
          })
        )
      }
      // The model's health: transient failures of the provider count; the rest (rate limits, refusals before the
      // call, bad requests) only hand a half-open circuit's probe back.
      if (Errors.isTransient(error) && error._tag !== "RateLimitError") {
        yield* breakerEvent(target, yield* breaker.onFailure(modelKey(target)), emit)
      } else {
        yield* breaker.release(modelKey(target))
      }
    })

  const breakerEvent = (target: ModelCatalog.ModelInfo, state: CircuitBreaker.State | undefined, emit: Emit) =>
    state === undefined ? Effect.void : emit({ _tag: "CircuitChanged", provider: target.provider, model: target.id, state })

  const run = Effect.fnUntraced(function*(
    input: PlotRequestInput,
    generateOptions: GenerateOptions,
    emit: Emit,
    streaming: boolean
  ) {
    const progress = (stage: Stage) =>
      emit({ _tag: "Progress", stage, message: stageMessages[stage], progress: stageProgress[stage] })
    const startedAt = yield* Clock.currentTimeMillis
    const requestId = `gen_${(yield* Random.nextIntBetween(0, 2 ** 31)).toString(16).padStart(8, "0")}${
      (yield* Random.nextIntBetween(0, 2 ** 31)).toString(16).padStart(8, "0")
    }`
    const request = yield* decodeRequest(input)
    yield* Effect.annotateCurrentSpan({ "plot_engine.request_id": requestId, "plot_engine.project_id": request.projectId })

    yield* progress("retrieving_context")
    const context = yield* store.get(request.projectId)

    yield* progress("selecting_model")
    // Sized with o200k before a model is known: close enough to choose a window.
    const contextTokens = ContextBudget.measure(context, countFor("gpt-4o").remembered)
    const selection = yield* selectModel(request, contextTokens)
    yield* progress("building_prompt")
    // One prompt per model and budget for this generation: the estimate below and the first attempt share it.
    const prepared = new Map<string, Prepared>()
    const prepareFor = (model: ModelCatalog.ModelInfo, reducedBudget: number | undefined): Prepared => {
      const key = `${modelKey(model)}:${reducedBudget ?? "full"}`
      let entry = prepared.get(key)
      if (entry === undefined) {
        entry = prepare(request, context, model, reducedBudget)
        prepared.set(key, entry)
      }
      return entry
    }
    yield* emit({
      _tag: "ModelSelected",
      provider: selection.model.provider,
      model: selection.model.id,
      reasoning: selection.reasoning,
      estimatedCostUsd: prepareFor(selection.model, undefined).estimatedCostUsd
    })
    yield* progress("generating")

    const useFallback = generateOptions.useFallback ?? true
    const finishedIn = Effect.map(Clock.currentTimeMillis, (now) => now - startedAt)
    return yield* runChain(request, selection, prepareFor, emit, streaming).pipe(
      Effect.flatMap(({ model, outcome, prepared, run }) =>
        Effect.map(finishedIn, (durationMs) => ({
          rateLimitErrors: run.rateLimitErrors,
          result: makeResult({
            requestId,
            content: outcome.parsed.content,
            outline: outcome.parsed.outline,
            provider: model.provider,
            model: model.id,
            reasoning: model.id === selection.model.id ? selection.reasoning : `${selection.reasoning}; ${run.warnings.at(-1)}`,
            usage: outcome.usage,
            estimatedCostUsd: ModelCatalog.cost(model, outcome.usage),
            preCallEstimateUsd: prepared.estimatedCostUsd,
            retryCount: run.attempts - 1,
            warnings: [...prepared.fitted.warnings, ...run.warnings, ...outcome.parsed.warnings],
            isTemplate: false,
            durationMs,
            wordCount: outcome.parsed.wordCount
          }, { rateLimitErrors: run.rateLimitErrors })
        }))
      ),
      Effect.catchAll(({ error, run }) =>
        useFallback && (Errors.isTransient(error) || error._tag === "ResponseParseError")
          ? Effect.gen(function*() {
            yield* Effect.logWarning("Generation failed; using the template fallback").pipe(
              Effect.annotateLogs({ errorType: Errors.errorType(error), error: error.message })
            )
            const outline = TemplateGenerator.generate(request, context)
            const parsed = ResponseParser.fromOutline(outline, request, context)
            const result = makeResult({
              requestId,
              content: parsed.content,
              outline,
              provider: "template",
              model: "template",
              reasoning: `The AI failed (${Errors.errorType(error)}); the template fallback was used`,
              usage: Usage.zero,
              estimatedCostUsd: 0,
              preCallEstimateUsd: null,
              retryCount: Math.max(0, run.attempts - 1),
              warnings: [TemplateGenerator.templateWarning, Errors.userMessage(error), ...run.warnings, ...parsed.warnings],
              isTemplate: true,
              durationMs: yield* finishedIn,
              wordCount: parsed.wordCount
            }, { errorType: Errors.errorType(error), rateLimitErrors: run.rateLimitErrors })
            return { result, rateLimitErrors: run.rateLimitErrors }
          })
          : Effect.zipRight(
            Effect.all([Telemetry.recordFailure(error), observe("failure", finishedIn, run.rateLimitErrors)], { discard: true }),
            Effect.fail(error)
          )
      ),
      Effect.tap(({ rateLimitErrors, result }) =>
        Effect.all([
          Telemetry.recordResult(result),
          observe(result.isTemplate ? "template" : "success", Effect.succeed(result.durationMs), rateLimitErrors)
        ], { discard: true })
      ),
      Effect.map(({ result }) => result),
      // Every log line of the generation, the models' own too, says which request and project it belongs to.
      Effect.annotateLogs({ requestId, projectId: request.projectId })
    )
  })

  /** Tells the alerts, when there are any, how a generation went. */
  const observe = (outcome: Alerts.Observation["outcome"], durationMs: Effect.Effect<number>, rateLimitErrors: number) =>
    Option.match(alerts, {
      onNone: () => Effect.void,
      onSome: (service) => Effect.flatMap(durationMs, (ms) => service.record({ outcome, durationMs: ms, rateLimitErrors }))
    })

  const generate = Effect.fn("PlotGeneration.generate")(
    (request: PlotRequestInput, options?: GenerateOptions) => run(request, options ?? {}, noEvents, false)
  )

  const generateStream = (request: PlotRequestInput, options?: GenerateOptions) =>
    Stream.unwrapScoped(
      Effect.gen(function*() {
        const mailbox = yield* Mailbox.make<GenerationEvent, Errors.GenerationError>()
        yield* run(request, options ?? {}, (event) => Effect.asVoid(mailbox.offer(event)), true).pipe(
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
 * The service configured from the environment: `PLOT_ENGINE_MAX_CONTEXT_TOKENS` (default 32,000), the
 * catalog of `ModelCatalog.load` (`PLOT_ENGINE_MODELS_FILE`, `PLOT_ENGINE_MODELS`) and the retry budgets of
 * `RetryPolicy.config`.
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
    const retryPolicy = yield* RetryPolicy.config
    return yield* make({ catalog, maxContextTokens, retryPolicy })
  })
)
