/**
 * The last stage of a generation: the `PlotResult` of the attempt that succeeded, or, when the chain failed
 * with a failure that time might have cured (or a reply that could not be read or was cut short) and the fallback
 * is on, the template's; otherwise the typed failure. Either way the metrics and the alerts hear how it went.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Analytics from "../Analytics.js"
import * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as ResponseParser from "../ResponseParser.js"
import type * as RetryPolicy from "../RetryPolicy.js"
import * as Telemetry from "../Telemetry.js"
import * as TemplateGenerator from "../TemplateGenerator.js"
import type * as Attempt from "./Attempt.js"
import type * as Chain from "./Chain.js"
import * as Engine from "./Engine.js"

/**
 * A result with its `GenerationMetrics`, derived from it once. Its parts are already valid (the outline was
 * decoded or built by the template), so the constructors skip validating them again: that took 100 µs. `fields` is a
 * record made for this result: it is completed in place.
 */
export const makeResult = (
  fields: Omit<Domain.PlotResult, "metrics">,
  extra: { readonly errorType?: Errors.ErrorType; readonly rateLimitErrors: number }
): Domain.PlotResult => {
  // `fields` is a record made for this result, completed in place: spreading a record of this size into a new one
  // cost a microsecond.
  const complete = fields as { -readonly [K in keyof Domain.PlotResult]?: Domain.PlotResult[K] }
  complete.metrics = metricsOf(fields, extra)
  return new Domain.PlotResult(complete as Domain.PlotResult, true)
}

/** The `GenerationMetrics` of a generation's figures (a result's, or a failure's). */
const metricsOf = (
  fields: Pick<
    Domain.PlotResult,
    "durationMs" | "usage" | "wordCount" | "warnings" | "isTemplate" | "retryCount" | "model" | "estimatedCostUsd"
  >,
  { errorType, rateLimitErrors }: { readonly errorType?: Errors.ErrorType; readonly rateLimitErrors: number }
): Domain.GenerationMetrics =>
  new Domain.GenerationMetrics({
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

/** What billed attempts cost together; `null` when one model's price is unknown (never a false 0). */
export const totalCost = (attempts: ReadonlyArray<Domain.AttemptCost>): number | null =>
  attempts.reduce<number | null>(
    (sum, attempt) => (sum === null || attempt.costUsd === null ? null : sum + attempt.costUsd),
    0
  )

/**
 * What billed attempts of a known price cost together: what a spend budget knows was spent (an attempt on a model
 * of unknown price adds nothing it could count, and takes nothing from what the others cost).
 */
export const knownCost = (attempts: ReadonlyArray<Domain.AttemptCost>): number =>
  attempts.reduce((sum, attempt) => sum + (attempt.costUsd ?? 0), 0)

/** `f` of how long the generation has taken so far. */
const withElapsed = <A, E>(generation: Engine.Generation, f: (durationMs: number) => Effect.Effect<A, E>) =>
  Engine.withNow((now) => f(now - generation.startedAt))

/** How long the generation has taken so far. */
const elapsed = (generation: Engine.Generation) => withElapsed(generation, Effect.succeed)

/** The result of the attempt that produced a plot. */
export const succeeded = (
  engine: Engine.Engine,
  generation: Engine.Generation,
  chain: Chain.State,
  { deployment, model, outcome, prepared }: Attempt.Success
): Effect.Effect<Domain.PlotResult> =>
  withElapsed(generation, (durationMs) => {
    const { selection } = generation
    const result = makeResult({
      requestId: generation.requestId,
      content: outcome.parsed.content,
      outline: outcome.parsed.outline,
      provider: model.provider,
      model: model.id,
      deployment,
      reasoning: model.id === selection.model.id
        ? selection.reasoning
        : `${selection.reasoning}; ${chain.warnings.at(-1)}`,
      usage: outcome.usage,
      estimatedCostUsd: totalCost(chain.billing),
      attempts: chain.billing,
      preCallEstimateUsd: prepared.estimatedCostUsd,
      retryCount: chain.attempts - 1,
      warnings: [...prepared.fitted.warnings, ...chain.warnings, ...outcome.parsed.warnings],
      isTemplate: false,
      durationMs,
      wordCount: outcome.parsed.wordCount
    }, { rateLimitErrors: chain.rateLimitErrors })
    return Effect.as(record(engine, generation, result, chain), result)
  })

/**
 * The end of a chain that failed: the template's result when the fallback is on and the failure is one that time
 * might have cured or a reply that could not be read, else the failure itself.
 */
export const failed = Effect.fnUntraced(function*(
  engine: Engine.Engine,
  generation: Engine.Generation,
  chain: Chain.State,
  error: RetryPolicy.RetryableError,
  useFallback: boolean
) {
  if (!useFallback || !worthATemplate(error)) {
    const durationMs = yield* elapsed(generation)
    yield* Telemetry.recordFailure(error)
    yield* engine.alerts.record({ outcome: "failure", durationMs, rateLimitErrors: chain.rateLimitErrors })
    yield* Analytics.report(
      engine.analytics,
      reportOf(
        generation,
        "failure",
        metricsOf({
          durationMs,
          usage: Domain.Usage.zero,
          wordCount: 0,
          warnings: chain.warnings,
          isTemplate: false,
          retryCount: Math.max(0, chain.attempts - 1),
          model: (chain.lastStep?.model ?? generation.selection.model).id,
          estimatedCostUsd: totalCost(chain.billing)
        }, { errorType: Errors.errorType(error), rateLimitErrors: chain.rateLimitErrors })
      )
    )
    return yield* Effect.fail(error)
  }
  yield* Effect.logWarning("Generation failed; using the template fallback").pipe(
    Effect.annotateLogs({
      requestId: generation.requestId,
      projectId: generation.request.projectId,
      errorType: Errors.errorType(error),
      error: error.message
    })
  )
  const { context, request } = generation
  const outline = TemplateGenerator.generate(request, context)
  const parsed = ResponseParser.fromOutline(outline, request, context)
  const result = makeResult({
    requestId: generation.requestId,
    content: parsed.content,
    outline,
    provider: "template",
    model: "template",
    reasoning: `The AI failed (${Errors.errorType(error)}); the template fallback was used`,
    usage: Domain.Usage.zero,
    // What the failed attempts were billed: a template is free, the AI's failures are not.
    estimatedCostUsd: totalCost(chain.billing),
    attempts: chain.billing,
    preCallEstimateUsd: null,
    retryCount: Math.max(0, chain.attempts - 1),
    warnings: [
      TemplateGenerator.templateWarning,
      `The AI's plot could not be had: ${Errors.templateReason(error)}.`,
      ...chain.warnings,
      ...parsed.warnings
    ],
    isTemplate: true,
    durationMs: yield* elapsed(generation),
    wordCount: parsed.wordCount
  }, { errorType: Errors.errorType(error), rateLimitErrors: chain.rateLimitErrors })
  yield* record(engine, generation, result, chain)
  return result
})

/**
 * Failures a template may stand in for: those time might have cured, and answers the model could not get right
 * (unreadable, or cut short at the output limit). Not a refusal of the request itself (auth, invalid, quota), nor
 * the local limiter's refusal: a saturated quota is answered "busy, try again in N s" at once, which a caller can
 * act on (an HTTP 429 with Retry-After), rather than with a template.
 */
const worthATemplate = (error: RetryPolicy.RetryableError): boolean =>
  (Errors.isTransient(error) && !(error._tag === "RateLimitError" && error.local)) ||
  error._tag === "ResponseParseError" || error._tag === "IncompleteResponseError"

/** Tells the metrics, the alerts and the analytics about a result. */
const record = (
  engine: Engine.Engine,
  generation: Engine.Generation,
  result: Domain.PlotResult,
  chain: Chain.State
): Effect.Effect<void> => {
  const outcome = result.isTemplate ? "template" : "success"
  return Engine.sequence(
    Telemetry.recordResult(result),
    engine.alerts.record({ outcome, durationMs: result.durationMs, rateLimitErrors: chain.rateLimitErrors }),
    Analytics.report(engine.analytics, reportOf(generation, outcome, result.metrics))
  )
}

/** A generation's report, written whole (a spread of a shared part into it cost a microsecond a result). */
const reportOf = (
  generation: Engine.Generation,
  outcome: Analytics.GenerationReport["outcome"],
  metrics: Domain.GenerationMetrics
): Analytics.GenerationReport => ({
  event: "plot_generation",
  requestId: generation.requestId,
  projectId: generation.request.projectId,
  kind: generation.request.kind ?? "outline",
  outcome,
  metrics
})
