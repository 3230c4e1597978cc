/**
 * Each generation's metrics, for a host's analytics: the service a backend provides to receive them (its product
 * analytics, a data warehouse, a billing ledger). The engine logs every generation's metrics at info level
 * ("Plot generation metrics") and, when an `Analytics` is in context, tracks them there too; without one, the log
 * and the Effect metrics (`Telemetry`) are all.
 *
 * @example
 * ```ts
 * import { Analytics } from "plot-engine"
 * import { Effect } from "effect"
 *
 * // Your analytics client, here a console: every generation, its outcome and its metrics.
 * const AnalyticsLive = Analytics.layer((report) =>
 *   Effect.sync(() => console.error(report.event, report.outcome, report.metrics.modelUsed, report.metrics.totalTokens))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as LogLevel from "effect/LogLevel"
import type * as Domain from "./Domain.js"

/**
 * One generation, as analytics see it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface GenerationReport {
  readonly event: "plot_generation"
  readonly requestId: string
  readonly projectId: string
  readonly kind: Domain.ContentKind
  /** A plot from the model, a template standing in for it, or a typed failure. */
  readonly outcome: "success" | "template" | "failure"
  readonly metrics: Domain.GenerationMetrics
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Receives a generation's report once it has ended. Its failures and defects are logged, never the caller's. */
  readonly track: (report: GenerationReport) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class Analytics extends Context.Tag("plot-engine/Analytics")<Analytics, Service>() {}

/**
 * An `Analytics` over a function that receives each report.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (track: (report: GenerationReport) => Effect.Effect<void>): Layer.Layer<Analytics> =>
  Layer.succeed(Analytics, Analytics.of({ track }))

/**
 * Logs a generation's metrics at info level and tracks them with `analytics` when there is one; a defect of the
 * host's tracking is logged, and the generation goes on.
 *
 * @since 0.1.0
 * @category Reporting
 */
export const report = (analytics: Service | undefined, generationReport: GenerationReport): Effect.Effect<void> => {
  // The line and its annotations are only made when info is logged (the default level of a server drops it).
  const logged = Effect.whenLogLevel(
    Effect.suspend(() =>
      Effect.logInfo("Plot generation metrics").pipe(
        // One flat line: each figure an annotation of its own, not a nested object a log line would spread over lines.
        Effect.annotateLogs({
          component: "plotGenerationService",
          requestId: generationReport.requestId,
          projectId: generationReport.projectId,
          outcome: generationReport.outcome,
          kind: generationReport.kind,
          ...Object.fromEntries(
            Object.entries(generationReport.metrics).filter(([, value]) => value !== undefined)
          )
        })
      )
    ),
    LogLevel.Info
  )
  return analytics === undefined ? Effect.asVoid(logged) : Effect.zipRight(
    logged,
    analytics.track(generationReport).pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("Analytics failed to track a generation", cause).pipe(
          Effect.annotateLogs({ requestId: generationReport.requestId, projectId: generationReport.projectId })
        )
      )
    )
  )
}
