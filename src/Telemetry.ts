/**
 * The engine's metrics, with stable names: generations by outcome, their duration, tokens in and out, retries,
 * calls to providers, errors by type, template fallbacks and cost, tagged by provider and model. They are
 * Effect `Metric`s: read them with `Metric.value`. Operators read them over OTLP (`plot-engine/Telemetry/OpenTelemetry`,
 * beside the spans) or as Prometheus text (`plot-engine/Telemetry/Prometheus`).
 *
 * @example
 * ```ts
 * import { Telemetry } from "plot-engine"
 * import { Effect, Metric } from "effect"
 *
 * const successes = Metric.value(
 *   Telemetry.generations.pipe(Metric.tagged("outcome", "success"), Metric.tagged("provider", "openai"))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as Option from "effect/Option"
import type * as Domain from "./Domain.js"
import * as Errors from "./Errors.js"
import * as Metrics from "./internal/metrics.js"
import * as ModelCatalog from "./ModelCatalog.js"
import * as ProviderRateLimiter from "./ProviderRateLimiter.js"

const tagged = Metrics.tagged

/**
 * Generations, tagged `outcome` (`success`, `template`, `failure`), `provider` and `model`.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const generations = Metrics.fromKey(MetricKey.counter("plot_engine_generations_total", {
  description: "Plot generations, by outcome",
  incremental: true
}))

/**
 * How long generations took, in milliseconds.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const generationDuration = Metrics.fromKey(MetricKey.histogram(
  "plot_engine_generation_duration_ms",
  MetricBoundaries.exponential({ start: 100, factor: 2, count: 12 }),
  "Generation duration in milliseconds"
))

/**
 * @since 0.1.0
 * @category Metrics
 */
export const inputTokens = Metrics.fromKey(MetricKey.counter("plot_engine_input_tokens_total", {
  description: "Prompt tokens the providers reported",
  incremental: true
}))

/**
 * Of the prompt tokens, those the providers read from their prompt cache.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const cachedInputTokens = Metrics.fromKey(MetricKey.counter("plot_engine_cached_input_tokens_total", {
  description: "Prompt tokens the providers read from their prompt cache",
  incremental: true
}))

/**
 * @since 0.1.0
 * @category Metrics
 */
export const outputTokens = Metrics.fromKey(MetricKey.counter("plot_engine_output_tokens_total", {
  description: "Output tokens the providers reported",
  incremental: true
}))

/**
 * Retries across fallback chains.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const retries = Metrics.fromKey(
  MetricKey.counter("plot_engine_retries_total", { description: "Retried attempts", incremental: true })
)

/**
 * Calls sent to a provider, tagged `provider`, `model`, `deployment` (its `id`: each has its own key and quota) and
 * `outcome` (`success`, an error type, or `interrupted`). Attempts the engine decided against (an open circuit, a
 * local queue timeout) are not calls.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const providerCalls = Metrics.fromKey(MetricKey.counter("plot_engine_provider_calls_total", {
  description: "Calls sent to a provider, by outcome",
  incremental: true
}))

/**
 * Failures, tagged `error_type` (`Errors.errorType`), whether retried or final.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const errors = Metrics.fromKey(
  MetricKey.counter("plot_engine_errors_total", { description: "Failures by type", incremental: true })
)

/**
 * @since 0.1.0
 * @category Metrics
 */
export const templateFallbacks = Metrics.fromKey(MetricKey.counter("plot_engine_template_fallbacks_total", {
  description: "Results built by the template generator",
  incremental: true
}))

/**
 * The estimated cost of every billed attempt, in USD, on its provider and model (unknown prices add nothing).
 *
 * @since 0.1.0
 * @category Metrics
 */
export const costUsd = Metrics.fromKey(
  MetricKey.counter("plot_engine_cost_usd_total", { description: "Estimated cost in USD", incremental: true })
)

/**
 * What attempts that produced nothing used cost, in USD: replies that could not be read, answers cut off at their
 * limit, streams that failed midway. Billed all the same.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const wastedCostUsd = Metrics.fromKey(
  MetricKey.counter("plot_engine_wasted_cost_usd_total", {
    description: "Estimated cost in USD of billed attempts whose output was not used",
    incremental: true
  })
)

/**
 * Records what a billed attempt cost, on its own provider and model (a generation may bill several): the cost, and
 * the wasted cost when it produced nothing used.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordAttemptCost = (attempt: Domain.AttemptCost): Effect.Effect<void> => {
  const cost = attempt.costUsd
  if (cost === null) return Effect.void
  const metrics = modelMetrics(attempt.provider, attempt.model)
  return Metrics.record((labels) => {
    metrics.costUsd.unsafeUpdate(cost, labels)
    if (attempt.outcome !== "success") metrics.wastedCostUsd.unsafeUpdate(cost, labels)
  })
}

/**
 * Records a finished generation.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordResult = (result: Domain.PlotResult): Effect.Effect<void> => {
  const metrics = modelMetrics(result.provider, result.model)
  return Metrics.record((labels) => {
    const generation = result.isTemplate ? metrics.templates : metrics.successes
    generation.unsafeUpdate(1, labels)
    metrics.duration.unsafeUpdate(result.durationMs, labels)
    metrics.inputTokens.unsafeUpdate(result.usage.inputTokens, labels)
    metrics.cachedInputTokens.unsafeUpdate(result.usage.cachedInputTokens ?? 0, labels)
    metrics.outputTokens.unsafeUpdate(result.usage.outputTokens, labels)
    metrics.retries.unsafeUpdate(result.retryCount, labels)
    if (result.isTemplate) templateFallbacks.unsafeUpdate(1, labels)
  })
}

/**
 * The metrics a result or a billed attempt updates, tagged with its provider and model: looked up once per update
 * rather than tag by tag for each of them. Providers come from a small set, and models are bounded by `modelLabel`.
 */
const modelMetrics = (provider: string, requested: string): ModelMetrics => {
  const model = modelLabel(requested)
  const key = `${provider}\u0000${model}`
  let metrics = metricsByModel.get(key)
  if (metrics === undefined) {
    metrics = tagModelMetrics(provider, model)
    metricsByModel.set(key, metrics)
  }
  return metrics
}

/**
 * The `model` label: the default catalog's models and the first others seen, 256 in all, by name; the rest as
 * `other` (a request may pin any model name; see `Metrics.boundedLabel`).
 */
const modelLabel = Metrics.boundedLabel(256, ModelCatalog.defaultCatalog.map((model) => model.id))

const tagModelMetrics = (provider: string, model: string) => {
  const tags = { provider, model }
  return {
    successes: tagged(generations, { provider, model, outcome: "success" }),
    templates: tagged(generations, { provider, model, outcome: "template" }),
    duration: tagged(generationDuration, tags),
    inputTokens: tagged(inputTokens, tags),
    cachedInputTokens: tagged(cachedInputTokens, tags),
    outputTokens: tagged(outputTokens, tags),
    retries: tagged(retries, tags),
    costUsd: tagged(costUsd, tags),
    wastedCostUsd: tagged(wastedCostUsd, tags)
  }
}

type ModelMetrics = ReturnType<typeof tagModelMetrics>

const metricsByModel = new Map<string, ModelMetrics>()

/**
 * Records a failure: every failed attempt, and the final failure of a generation.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordError = (error: Errors.GenerationError): Effect.Effect<void> =>
  Metric.increment(tagged(errors, {
    error_type: Errors.errorType(error),
    provider: "provider" in error ? error.provider : "none",
    model: "model" in error ? modelLabel(error.model) : "none"
  }))

/**
 * Records one call sent to a provider, by how it ended.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordProviderCall = (
  target: ProviderRateLimiter.Target,
  outcome: Exit.Exit<unknown, Errors.GenerationError>
): Effect.Effect<void> =>
  Metric.increment(tagged(providerCalls, {
    provider: target.provider,
    model: modelLabel(target.model),
    deployment: ProviderRateLimiter.deploymentOf(target),
    outcome: Exit.match(outcome, {
      onSuccess: () => "success",
      onFailure: (cause) =>
        Option.match(Cause.failureOption(cause), { onNone: () => "interrupted", onSome: Errors.errorType })
    })
  }))

/**
 * Records a generation that ended in a typed failure.
 *
 * @since 0.1.0
 * @category Recording
 */
export const recordFailure = (error: Errors.GenerationError): Effect.Effect<void> =>
  Metric.increment(tagged(generations, {
    provider: "provider" in error ? error.provider : "none",
    model: "model" in error ? modelLabel(error.model) : "none",
    outcome: "failure"
  }))
