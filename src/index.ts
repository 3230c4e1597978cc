/**
 * plot-engine: plot content for novels from OpenAI and Anthropic, the Effect way.
 *
 * The main entry loads the library alone. Heavier parts have entry points of their own:
 * `plot-engine/ProviderRateLimiter/Redis` (one quota across instances, over `ioredis`),
 * `plot-engine/Telemetry/OpenTelemetry` (span and metric export through the OpenTelemetry SDK),
 * `plot-engine/Telemetry/Prometheus` (the metrics in Prometheus' text format), `plot-engine/PlotEngine`
 * (the composition root an application runs: Node's HTTP stack, the embedded simulator) and
 * `plot-engine/simulator/*` (the gateway simulator).
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Alerts from "./Alerts.js"

/** @since 0.1.0 */
export * as AlertSink from "./AlertSink.js"

/** @since 0.1.0 */
export * as Analytics from "./Analytics.js"

/** @since 0.1.0 */
export * as CircuitBreaker from "./CircuitBreaker.js"

/** @since 0.1.0 */
export * as ContextBudget from "./ContextBudget.js"

/** @since 0.2.0 */
export * as Deployments from "./Deployments.js"

/** @since 0.1.0 */
export * as Domain from "./Domain.js"

/** @since 0.1.0 */
export * as Errors from "./Errors.js"

/** @since 0.1.0 */
export * as ModelCatalog from "./ModelCatalog.js"

/** @since 0.1.0 */
export * as ModelSelector from "./ModelSelector.js"

/** @since 0.1.0 */
export * as PlotGeneration from "./PlotGeneration.js"

/** @since 0.1.0 */
export * as ProjectContextStore from "./ProjectContextStore.js"

/** @since 0.1.0 */
export * as PromptBuilder from "./PromptBuilder.js"

/** @since 0.2.0 */
export * as QuotaSignals from "./QuotaSignals.js"

/** @since 0.1.0 */
export * as ProviderRateLimiter from "./ProviderRateLimiter.js"

/** @since 0.1.0 */
export * as Providers from "./Providers.js"

/** @since 0.1.0 */
export * as ResponseParser from "./ResponseParser.js"

/** @since 0.1.0 */
export * as RetryPolicy from "./RetryPolicy.js"

/** @since 0.1.0 */
export * as SpendLedger from "./SpendLedger.js"

/** @since 0.1.0 */
export * as Telemetry from "./Telemetry.js"

/** @since 0.1.0 */
export * as TemplateGenerator from "./TemplateGenerator.js"

/** @since 0.1.0 */
export * as TokenCount from "./TokenCount.js"
