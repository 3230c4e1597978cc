/**
 * Alert rules over rolling windows on Effect's `Clock`: error rate above 5 % in 5 minutes, mean
 * latency above 10 seconds, more than 10 rate-limit errors in a minute, template fallback rate above 20 %.
 * An alert is raised once when its rule starts firing and resolved once when it stops (an episode), as a `Stream`
 * and through the sinks (`AlertSink`: a warning log line by default, a webhook, the host's notifier). A window
 * that empties resolves its alert at the exact instant it passes: the evaluator sleeps until the next observation
 * leaves a window, it never polls. Only a new observation raises an alert; one leaving a window can only resolve.
 *
 * @since 0.1.0
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import * as Ref from "effect/Ref"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import * as AlertSink from "./AlertSink.js"

/**
 * What one generation did, as the alerts see it.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Observation {
  readonly outcome: "success" | "template" | "failure"
  readonly durationMs: number
  /** Rate-limit errors met on the way (each retried 429 counts). */
  readonly rateLimitErrors: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export type Rule = "error_rate" | "mean_latency" | "rate_limit_errors" | "template_rate"

/**
 * The thresholds; an alert fires when its value is strictly above its threshold.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Thresholds {
  readonly errorRate: number
  readonly errorRateWindow: Duration.DurationInput
  readonly meanLatencyMs: number
  readonly latencyWindow: Duration.DurationInput
  readonly rateLimitErrors: number
  readonly rateLimitWindow: Duration.DurationInput
  readonly templateRate: number
  readonly templateRateWindow: Duration.DurationInput
}

/**
 * The default rules: error rate above 5 % in 5 minutes, mean latency above 10 s in 5 minutes, more than 10
 * rate-limit errors in a minute, template rate above 20 % in 5 minutes.
 *
 * @since 0.1.0
 * @category Models
 */
export const defaultThresholds: Thresholds = {
  errorRate: 0.05,
  errorRateWindow: "5 minutes",
  meanLatencyMs: 10_000,
  latencyWindow: "5 minutes",
  rateLimitErrors: 10,
  rateLimitWindow: "1 minute",
  templateRate: 0.2,
  templateRateWindow: "5 minutes"
}

/**
 * An alert raised or resolved.
 *
 * @since 0.1.0
 * @category Models
 */
export interface AlertEvent {
  readonly _tag: "Raised" | "Resolved"
  readonly rule: Rule
  /** The rule's value when it changed (a rate, milliseconds, or a count). */
  readonly value: number
  readonly threshold: number
  readonly at: number
}

interface Timed extends Observation {
  readonly at: number
}

const windowOf = (thresholds: Thresholds): Record<Rule, number> => ({
  error_rate: Duration.toMillis(thresholds.errorRateWindow),
  mean_latency: Duration.toMillis(thresholds.latencyWindow),
  rate_limit_errors: Duration.toMillis(thresholds.rateLimitWindow),
  template_rate: Duration.toMillis(thresholds.templateRateWindow)
})

/**
 * The value of every rule over the observations still inside its window at `now` (a window holds what
 * happened in the last `window` milliseconds, `now` excluded from nothing: an observation at `now - window`
 * has left it).
 *
 * @since 0.1.0
 * @category Evaluating
 */
export const evaluate = (
  observations: ReadonlyArray<Timed>,
  now: number,
  thresholds: Thresholds
): Record<Rule, { readonly value: number; readonly threshold: number; readonly firing: boolean }> => {
  const windows = windowOf(thresholds)
  const inside = (rule: Rule) => observations.filter((o) => now - o.at < windows[rule])
  const rate = (items: ReadonlyArray<Timed>, outcome: Observation["outcome"]) =>
    items.length === 0 ? 0 : items.filter((o) => o.outcome === outcome).length / items.length
  const errors = rate(inside("error_rate"), "failure")
  const latencies = inside("mean_latency")
  const meanLatency = latencies.length === 0
    ? 0
    : latencies.reduce((sum, o) => sum + o.durationMs, 0) / latencies.length
  const rateLimits = inside("rate_limit_errors").reduce((sum, o) => sum + o.rateLimitErrors, 0)
  const templates = rate(inside("template_rate"), "template")
  return {
    error_rate: { value: errors, threshold: thresholds.errorRate, firing: errors > thresholds.errorRate },
    mean_latency: {
      value: meanLatency,
      threshold: thresholds.meanLatencyMs,
      firing: meanLatency > thresholds.meanLatencyMs
    },
    rate_limit_errors: {
      value: rateLimits,
      threshold: thresholds.rateLimitErrors,
      firing: rateLimits > thresholds.rateLimitErrors
    },
    template_rate: { value: templates, threshold: thresholds.templateRate, firing: templates > thresholds.templateRate }
  }
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  readonly record: (observation: Observation) => Effect.Effect<void>
  /** Alerts raised and resolved from now on. */
  readonly events: Stream.Stream<AlertEvent>
  /** The rules firing now. */
  readonly active: Effect.Effect<ReadonlyArray<Rule>>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class Alerts extends Context.Tag("plot-engine/Alerts")<Alerts, Service>() {}

/**
 * Where the alerts go.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Options {
  /** The sinks (default: the log line alone). */
  readonly sinks?: ReadonlyArray<AlertSink.AlertSink> | undefined
  /** How long closing the scope waits for deliveries still under way (default 5 seconds). */
  readonly drainTimeout?: Duration.DurationInput | undefined
}

interface Delivery {
  readonly offer: (alert: AlertSink.Alert) => Effect.Effect<void>
  /** Done when nothing is queued or being delivered. */
  readonly idle: Effect.Effect<void>
}

/**
 * A sink's own queue and fiber: a slow sink delays only its own later alerts, in order, and never the evaluator.
 */
const startDelivery = (sink: AlertSink.AlertSink): Effect.Effect<Delivery, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<AlertSink.Alert>()
    const pending = yield* SubscriptionRef.make(0)
    const deliver = (alert: AlertSink.Alert) =>
      sink.deliver(alert).pipe(
        Effect.catchAllCause((cause) =>
          Cause.isInterruptedOnly(cause)
            ? Effect.void
            : Effect.logWarning(`Alert ${alert.state}: ${alert.rule} was not delivered to the ${sink.name} sink`, cause)
        ),
        Effect.ensuring(SubscriptionRef.update(pending, (n) => n - 1))
      )
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(queue), deliver)))
    return {
      offer: (alert) => Effect.zipRight(SubscriptionRef.update(pending, (n) => n + 1), Queue.offer(queue, alert)),
      idle: pending.changes.pipe(Stream.filter((n) => n === 0), Stream.take(1), Stream.runDrain)
    }
  })

/**
 * Makes the alerts; the evaluator lives as long as the scope. Closing the scope waits up to `drainTimeout` for the
 * alerts still being delivered.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (
  thresholds: Thresholds = defaultThresholds,
  options: Options = {}
): Effect.Effect<Service, never, Scope.Scope> =>
  Effect.gen(function*() {
    const deliveries = yield* Effect.forEach(options.sinks ?? [AlertSink.log], startDelivery)
    // Added after the delivery fibers: finalizers run last first, so this one waits before they are interrupted.
    // Finalizers run uninterruptibly: the wait is made interruptible, so that the timeout can end it.
    yield* Effect.addFinalizer(() =>
      Effect.forEach(deliveries, (delivery) => delivery.idle, { concurrency: "unbounded", discard: true }).pipe(
        Effect.interruptible,
        Effect.timeoutOption(options.drainTimeout ?? "5 seconds")
      )
    )
    const windows = windowOf(thresholds)
    const longest = Math.max(...Object.values(windows))
    const observations = yield* Ref.make<ReadonlyArray<Timed>>([])
    const firing = yield* Ref.make<ReadonlySet<Rule>>(new Set())
    const hub = yield* PubSub.unbounded<AlertEvent>()
    const wake = yield* Queue.sliding<void>(1)

    // `observed`: woken by an observation. Woken by one leaving a window, a rule may stop firing but never start:
    // what is left of a window after its older part has left says nothing new (the fast calls of a burst leave
    // before its slow ones, and a mean latency raised minutes after the last call was a false alarm).
    const check = (observed: boolean) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const kept = (yield* Ref.get(observations)).filter((o) => now - o.at < longest)
        yield* Ref.set(observations, kept)
        const values = evaluate(kept, now, thresholds)
        const before = yield* Ref.get(firing)
        const after = new Set(
          (Object.keys(values) as Array<Rule>).filter((rule) => values[rule].firing && (observed || before.has(rule)))
        )
        for (const rule of Object.keys(values) as Array<Rule>) {
          if (before.has(rule) === after.has(rule)) continue
          const { threshold, value } = values[rule]
          const event: AlertEvent = { _tag: after.has(rule) ? "Raised" : "Resolved", rule, value, threshold, at: now }
          yield* PubSub.publish(hub, event)
          const alert = AlertSink.toAlert(event)
          for (const delivery of deliveries) yield* delivery.offer(alert)
        }
        yield* Ref.set(firing, after)
        // The next instant an observation leaves a window, when that can change a rule.
        const exits = kept.flatMap((o) => Object.values(windows).map((w) => o.at + w)).filter((t) => t > now)
        return exits.length === 0 ? undefined : Math.min(...exits)
      })

    // Evaluate after every observation, and at every window exit in between: sleep, never poll.
    yield* Effect.gen(function*() {
      let observed = false
      while (true) {
        const next: number | undefined = yield* check(observed)
        const now = yield* Clock.currentTimeMillis
        const woken = Effect.as(Queue.take(wake), true)
        observed = yield* next === undefined
          ? woken
          : Effect.raceFirst(woken, Effect.as(Effect.sleep(next - now), false))
      }
    }).pipe(Effect.forkScoped)

    return {
      record: (observation) =>
        Effect.flatMap(
          Clock.currentTimeMillis,
          (at) =>
            Effect.zipRight(
              Ref.update(observations, (all) => [...all, { ...observation, at }]),
              Queue.offer(wake, undefined)
            )
        ),
      events: Stream.fromPubSub(hub),
      active: Effect.map(Ref.get(firing), (set) => [...set])
    }
  })

/**
 * The alerts as a layer (by default to the log line alone).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (thresholds: Thresholds = defaultThresholds, options: Options = {}): Layer.Layer<Alerts> =>
  Layer.scoped(Alerts, make(thresholds, options))

/**
 * The alerts to the sinks the environment asks for (`AlertSink.fromConfig`: the log line, a webhook when
 * `PLOT_ENGINE_ALERT_WEBHOOK_URL` is set, the host's `AlertNotifier` when provided).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerConfig = (
  thresholds: Thresholds = defaultThresholds
): Layer.Layer<Alerts, ConfigError.ConfigError, HttpClient.HttpClient> =>
  Layer.scoped(Alerts, Effect.flatMap(AlertSink.fromConfig, (sinks) => make(thresholds, { sinks })))

/**
 * No alerts: observations are dropped. Choosing it is explicit, so that forgetting the alerts is a type error.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerDisabled: Layer.Layer<Alerts> = Layer.succeed(Alerts, {
  record: () => Effect.void,
  events: Stream.empty,
  active: Effect.succeed([])
})
