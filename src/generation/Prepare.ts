/**
 * The first stage of a generation: the request checked, the project's context read, the model chosen, and the
 * prompt for each model the chain may call (the context fitted to its budget), made once per generation.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as ContextBudget from "../ContextBudget.js"
import * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as Validation from "../internal/validation.js"
import * as ModelCatalog from "../ModelCatalog.js"
import * as ModelSelector from "../ModelSelector.js"
import * as PromptBuilder from "../PromptBuilder.js"
import type * as SpendLedger from "../SpendLedger.js"
import type * as TokenCount from "../TokenCount.js"
import * as Engine from "./Engine.js"

/** A model chosen for a request, with why. */
export interface Selection {
  readonly model: ModelCatalog.ModelInfo
  readonly reasoning: string
}

/** A prompt made for one model: the fitted context, its size and its expected cost. */
export interface Prepared {
  readonly prompt: PromptBuilder.BuiltPrompt
  readonly fitted: ContextBudget.Fitted
  /** The prompt without the project context, in tokens. */
  readonly promptTokens: number
  /** The whole prompt, in tokens: what the rate limiter reserves for the input. */
  readonly inputTokens: number
  readonly estimatedCostUsd: number | null
}

/** The prompts of one generation, one per model and context budget, each made once. */
export interface Prompts {
  /**
   * The prompt for a model, with the full context budget or, after a context-length rejection, a reduced one; and
   * its output budget, or after an answer that ran out of output tokens, the one of its retry.
   */
  readonly forModel: (
    model: ModelCatalog.ModelInfo,
    reducedBudget: number | undefined,
    outputBudget?: PromptBuilder.OutputBudget | undefined
  ) => Effect.Effect<Prepared>
}

// =============================================================================
// Decisions
// =============================================================================

const decodePlotRequest = Schema.decodeUnknownEither(Domain.PlotRequest, { onExcessProperty: "error" })

/** The request with every field checked; the first bad one is named. */
export const decodeRequest = (
  input: Domain.PlotRequestInput
): Either.Either<Domain.PlotRequest, Errors.RequestValidationError> => {
  const request = requestAsWritten(input)
  return request !== undefined
    ? Either.right(request)
    : Either.mapLeft(decodePlotRequest(input), (error) => Errors.RequestValidationError.fromParseError(error))
}

/**
 * The request, when every field is already what the schema asks (the prompt within bounds once trimmed, the
 * choices known ones, no other field), made without Schema's decoder, which cost 20 µs of every generation;
 * `undefined` for anything else, which the decoder then reads and, when it is wrong, names the field. What it
 * accepts, it reads as the decoder does (the tests pin the two to each other).
 */
const requestAsWritten = (input: unknown): Domain.PlotRequest | undefined => {
  if (!Predicate.isRecord(input)) return undefined
  // Only the input's own fields, every one of them (symbols and hidden ones too, as the decoder sees them): a field
  // inherited, or a key the request does not have, is the decoder's to judge.
  const fields: Record<string, unknown> = {}
  for (const key of Reflect.ownKeys(input)) {
    if (typeof key !== "string" || !Object.hasOwn(requestFields, key)) return undefined
    const value = (input as Record<string, unknown>)[key]
    if (value === undefined) return undefined
    fields[key] = value
  }
  const { costSensitive, genre, kind, model, projectId, provider, targetWordCount, temperature, userPrompt } = fields
  if (typeof projectId !== "string" || !Domain.projectIdPattern.test(projectId)) return undefined
  const prompt = Validation.trimmedWithin(userPrompt, Domain.Limits.promptMaxLength)
  if (prompt === undefined) return undefined
  const request: { -readonly [K in keyof Domain.PlotRequest]: Domain.PlotRequest[K] } = {
    projectId,
    userPrompt: prompt
  }
  if (genre !== undefined) {
    const trimmed = Validation.trimmedWithin(genre, Domain.Limits.genreMaxLength)
    if (trimmed === undefined) return undefined
    request.genre = trimmed
  }
  if (targetWordCount !== undefined) {
    if (
      !Number.isSafeInteger(targetWordCount) || (targetWordCount as number) < Domain.Limits.minWordCount ||
      (targetWordCount as number) > Domain.Limits.maxWordCount
    ) return undefined
    request.targetWordCount = targetWordCount as number
  }
  if (kind !== undefined) {
    if (!(Domain.ContentKind.literals as ReadonlyArray<unknown>).includes(kind)) return undefined
    request.kind = kind as Domain.ContentKind
  }
  if (provider !== undefined) {
    if (!(Domain.ProviderName.literals as ReadonlyArray<unknown>).includes(provider)) return undefined
    request.provider = provider as Domain.ProviderName
  }
  if (model !== undefined) {
    const trimmed = Validation.trimmedWithin(model, Domain.Limits.modelMaxLength)
    if (trimmed === undefined) return undefined
    request.model = trimmed
  }
  if (costSensitive !== undefined) {
    if (typeof costSensitive !== "boolean") return undefined
    request.costSensitive = costSensitive
  }
  if (temperature !== undefined) {
    if (
      typeof temperature !== "number" || !(temperature >= Domain.Limits.minTemperature) ||
      !(temperature <= Domain.Limits.maxTemperature)
    ) return undefined
    request.temperature = temperature
  }
  return new Domain.PlotRequest(request, true)
}

const requestFields = Domain.PlotRequest.fields

/**
 * The model for a request: the pinned one (its provider required and configured), else the one the selector
 * chooses among the configured providers for the request's complexity and the context's size.
 */
export const selectModel = (
  request: Domain.PlotRequest,
  contextTokens: number,
  options: {
    readonly catalog: ModelCatalog.Catalog
    readonly configured: ReadonlyArray<Domain.ProviderName>
    /** Whether a pinned model must be in the catalog (see `PlotGeneration.Options.pinnedModels`); default `any`. */
    readonly pinnedModels?: "any" | "catalog" | undefined
  }
): Either.Either<Selection, Errors.ProviderNotConfiguredError | Errors.RequestValidationError> => {
  const { catalog, configured } = options
  const known = (provider: Domain.ProviderName, id: string) =>
    Option.getOrElse(ModelCatalog.find(catalog, provider, id), () => ModelCatalog.unknownModel(provider, id))
  if (request.provider !== undefined && !configured.includes(request.provider)) {
    return Either.left(new Errors.ProviderNotConfiguredError({ provider: request.provider }))
  }
  if (request.model !== undefined) {
    if (request.provider === undefined) {
      return Either.left(
        new Errors.RequestValidationError({ field: "provider", reason: "is required when a model is pinned" })
      )
    }
    const provider = request.provider
    const pinned = ModelCatalog.find(catalog, provider, request.model)
    if (Option.isSome(pinned)) return Either.right({ model: pinned.value, reasoning: "Model pinned by the request" })
    // The other provider's model, sent to this one's API, would only come back not found.
    const elsewhere = catalog.find((model) => model.id === request.model && model.provider !== provider)
    if (elsewhere !== undefined) {
      return Either.left(
        new Errors.RequestValidationError({
          field: "model",
          reason: `${request.model} is ${elsewhere.provider}'s model, not ${provider}'s`
        })
      )
    }
    if (options.pinnedModels === "catalog") {
      const ids = catalog.filter((model) => model.provider === provider && !model.retired).map((model) => model.id)
      return Either.left(
        new Errors.RequestValidationError({
          field: "model",
          reason: `${request.model} is not one of ${provider}'s models here (${ids.join(", ")})`
        })
      )
    }
    return Either.right({ model: known(provider, request.model), reasoning: "Model pinned by the request" })
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
    { catalog, providers: configured, outputTokens: PromptBuilder.expectedOutputTokens(words) }
  )
  return Option.match(selection, {
    onNone: () => Either.left(new Errors.ProviderNotConfiguredError({ provider: request.provider ?? "openai" })),
    onSome: (chosen) => Either.right({ model: known(chosen.provider, chosen.model), reasoning: chosen.reasoning })
  })
}

/**
 * The prompt for a model: the context fitted into what the model's window leaves (or into the reduced budget of
 * a retry after a context-length rejection), and the prompt built around it. The prompt without the project is
 * sized from its texts: only the writer's words are new (the fixed parts are counted once and remembered).
 */
export const prepare = (
  request: Domain.PlotRequest,
  context: Domain.ProjectContext,
  model: ModelCatalog.ModelInfo,
  counter: TokenCount.Counter,
  options: {
    readonly maxContextTokens: number | undefined
    readonly reducedBudget: number | undefined
    readonly outputBudget?: PromptBuilder.OutputBudget | undefined
    readonly reasoningEfforts?: Partial<Record<Domain.ContentKind, Domain.ReasoningEffort>> | undefined
    readonly cacheTtl?: PromptBuilder.CacheTtl | undefined
  }
): Prepared => {
  const sizing = PromptBuilder.sizing(request)
  const promptTokens = counter.remembered(sizing.shared[0]) + counter.remembered(sizing.shared[1]) +
    counter.once(sizing.own)
  const words = PromptBuilder.targetWords(request)
  const output = options.outputBudget ?? PromptBuilder.outputBudgetFor(request, model, options.reasoningEfforts)
  const { maxOutputTokens } = output
  const budget = ContextBudget.budgetFor(model, {
    maxOutputTokens,
    promptTokens,
    maxContextTokens: options.maxContextTokens
  })
  const fitted = ContextBudget.fit(context, Math.min(budget, options.reducedBudget ?? budget), counter.remembered)
  const prompt = PromptBuilder.build(request, fitted.context, model, output, options.cacheTtl)
  const inputTokens = promptTokens + fitted.tokens
  // A reasoning model is expected to spend about half its reserve thinking, billed as output.
  const reasoning = output.reasoningEffort === undefined
    ? 0
    : PromptBuilder.reasoningReserve[output.reasoningEffort] / 2
  const outputTokens = Math.min(maxOutputTokens, PromptBuilder.expectedOutputTokens(words) + reasoning)
  return {
    prompt,
    fitted,
    promptTokens,
    inputTokens,
    estimatedCostUsd: ModelCatalog.cost(model, { inputTokens, outputTokens })
  }
}

/** The prompts of one generation: the cost estimate and the first attempt share the first model's. */
export const prompts = (
  engine: Engine.Engine,
  request: Domain.PlotRequest,
  context: Domain.ProjectContext
): Prompts => {
  const made = new Map<string, Prepared>()
  return {
    forModel: (model, reducedBudget, outputBudget) => {
      const key = `${Engine.modelKey(model)}\u0000${reducedBudget ?? "full"}\u0000${
        outputBudget === undefined ? "" : `${outputBudget.maxOutputTokens}:${outputBudget.reasoningEffort ?? ""}`
      }`
      const known = made.get(key)
      if (known !== undefined) return Effect.succeed(known)
      return Effect.map(engine.tokens.forModel(model), (counter) => {
        const prepared = prepare(request, context, model, counter, {
          maxContextTokens: engine.maxContextTokens,
          reducedBudget,
          outputBudget,
          reasoningEfforts: engine.reasoningEfforts,
          cacheTtl: engine.promptCache.ttl
        })
        made.set(key, prepared)
        return prepared
      })
    }
  }
}

// =============================================================================
// The stage
// =============================================================================

/**
 * A request id that says what it is: `gen_` and 64 random bits, from Effect's `Random` (pinned in tests). Two
 * draws in sequence (`Effect.zipWith` would run them as a collection, four times the steps).
 */
const newRequestId = Effect.randomWith((random) =>
  Effect.flatMap(random.nextIntBetween(0, 2 ** 31), (high) =>
    Effect.map(
      random.nextIntBetween(0, 2 ** 31),
      (low) => `gen_${high.toString(16).padStart(8, "0")}${low.toString(16).padStart(8, "0")}`
    ))
)

/** How a generation runs, as its caller decided: who hears it, how it calls, its lane, whether it is traced. */
type How = Pick<Engine.Generation, "emit" | "mode" | "lane" | "traced">

/**
 * Starts a generation: the request decoded, the project's context retrieved, the model chosen and its cost
 * estimated, each stage reported as it begins.
 */
export const start = (
  engine: Engine.Engine,
  input: Domain.PlotRequestInput,
  how: How
): Effect.Effect<Engine.Generation, Errors.GenerationError> =>
  Engine.withNow((startedAt) => startAt(engine, input, how, startedAt))

const startAt = Effect.fnUntraced(function*(
  engine: Engine.Engine,
  input: Domain.PlotRequestInput,
  { emit, lane, mode, traced }: How,
  startedAt: number
) {
  const requestId = yield* newRequestId
  const request = yield* decodeRequest(input)
  if (traced) {
    yield* Effect.annotateCurrentSpan({
      "plot_engine.request_id": requestId,
      "plot_engine.project_id": request.projectId
    })
  }
  // The events are made only when somebody listens (`generateStream`).
  const listening = Engine.listening(emit)

  if (listening) yield* Engine.progress(emit, "retrieving_context")
  const context = yield* engine.store.get(request.projectId)

  if (listening) yield* Engine.progress(emit, "selecting_model")
  // Sized with o200k before a model is known: close enough to choose a window.
  const contextTokens = ContextBudget.measure(context, engine.tokens.forEncoding("gpt-4o").remembered)
  const selection = yield* selectModel(request, contextTokens, {
    catalog: engine.catalog,
    configured: engine.providers.configured,
    pinnedModels: engine.pinnedModels
  })

  if (listening) yield* Engine.progress(emit, "building_prompt")
  const generationPrompts = prompts(engine, request, context)
  const first = yield* generationPrompts.forModel(selection.model, undefined)
  if (listening) {
    yield* emit({
      _tag: "ModelSelected",
      provider: selection.model.provider,
      model: selection.model.id,
      reasoning: selection.reasoning,
      estimatedCostUsd: first.estimatedCostUsd
    })
    yield* Engine.progress(emit, "generating")
  }
  return {
    requestId,
    request,
    context,
    selection,
    prompts: generationPrompts,
    startedAt,
    mode,
    lane,
    emit,
    traced
  } satisfies Engine.Generation
})

/**
 * Holds the generation's pre-call estimate against its project's spend budgets in the host's ledger: a generation
 * that would pass one fails here, before any call (an unknown price holds nothing).
 */
export const reserveBudget = (
  ledger: SpendLedger.Service,
  generation: Engine.Generation
): Effect.Effect<SpendLedger.Reservation, Errors.BudgetExceededError> =>
  Effect.flatMap(
    generation.prompts.forModel(generation.selection.model, undefined),
    (first) => ledger.reserve(generation.request.projectId, first.estimatedCostUsd ?? 0)
  )
