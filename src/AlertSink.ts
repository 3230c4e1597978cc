/**
 * Where the alerts go when they are raised and resolved: a log line (the default), a webhook that receives the
 * alert as JSON, or a service the host provides (a pager, a chat, its own incident tracker). `Alerts` delivers to
 * each sink from a fiber of its own, in order, so that a slow or broken sink never holds up a generation nor the
 * other sinks; a failed delivery is logged, never retried.
 *
 * @example
 * ```ts
 * import { Alerts, AlertSink } from "plot-engine"
 * import { Effect, Layer } from "effect"
 *
 * // A log line, a webhook when PLOT_ENGINE_ALERT_WEBHOOK_URL is set, and the host's notifier.
 * const AlertsLive = Alerts.layerConfig().pipe(
 *   Layer.provide(Layer.succeed(AlertSink.AlertNotifier, { notify: (alert) => Effect.log(alert.rule) }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Alerts from "./Alerts.js"
import * as ConfigValues from "./internal/configValues.js"

/**
 * An alert as sinks send it: the webhook's JSON body, and what the host's notifier receives.
 *
 * @since 0.1.0
 * @category Models
 */
export const Alert = Schema.Struct({
  rule: Schema.Literal("error_rate", "mean_latency", "rate_limit_errors", "template_rate"),
  state: Schema.Literal("raised", "resolved"),
  /** The rule's value when it changed (a rate, milliseconds, or a count). */
  value: Schema.Number,
  /** The threshold the value went above (raised) or came back to (resolved). */
  threshold: Schema.Number,
  /** When, as an ISO time. */
  at: Schema.String
}).annotations({ identifier: "Alert" })

/**
 * @since 0.1.0
 * @category Models
 */
export type Alert = typeof Alert.Type

/**
 * The alert of an event.
 *
 * @since 0.1.0
 * @category Models
 */
export const toAlert = (event: Alerts.AlertEvent): Alert => ({
  rule: event.rule,
  state: event._tag === "Raised" ? "raised" : "resolved",
  value: event.value,
  threshold: event.threshold,
  at: new Date(event.at).toISOString()
})

/**
 * A sink could not deliver an alert; `reason` says why without the sink's address (a webhook URL often holds
 * its token).
 *
 * @since 0.1.0
 * @category Errors
 */
export class AlertDeliveryError extends Schema.TaggedError<AlertDeliveryError>("plot-engine/AlertDeliveryError")(
  "AlertDeliveryError",
  { sink: Schema.String, reason: Schema.String }
) {
  override get message(): string {
    return `The ${this.sink} sink could not deliver the alert: ${this.reason}`
  }
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface AlertSink {
  /** Names the sink in the log of a failed delivery. */
  readonly name: string
  readonly deliver: (alert: Alert) => Effect.Effect<void, AlertDeliveryError>
}

/**
 * A sink of your own.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (name: string, deliver: AlertSink["deliver"]): AlertSink => ({ name, deliver })

/**
 * A warning log line per alert: "Alert raised: error_rate", annotated with its value and threshold.
 *
 * @since 0.1.0
 * @category Sinks
 */
export const log: AlertSink = make("log", (alert) =>
  Effect.logWarning(`Alert ${alert.state}: ${alert.rule}`).pipe(
    Effect.annotateLogs({ rule: alert.rule, value: alert.value, threshold: alert.threshold })
  ))

/**
 * @since 0.1.0
 * @category Sinks
 */
export interface WebhookOptions {
  /** How long a POST may take before it is given up (default 5 seconds). */
  readonly timeout?: Duration.DurationInput | undefined
}

/**
 * Each alert POSTed as JSON (`Alert`) to `url`, within `timeout`; an answer other than 2xx is a failed delivery.
 *
 * @since 0.1.0
 * @category Sinks
 */
export const webhook = (
  url: string | Redacted.Redacted<string>,
  options: WebhookOptions = {}
): Effect.Effect<AlertSink, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const ok = HttpClient.filterStatusOk(client)
    const timeout = Duration.decode(options.timeout ?? "5 seconds")
    const target = typeof url === "string" ? url : Redacted.value(url)
    const failed = (reason: string) => new AlertDeliveryError({ sink: "webhook", reason })
    return make("webhook", (alert) =>
      ok.execute(HttpClientRequest.post(target).pipe(HttpClientRequest.bodyUnsafeJson(alert))).pipe(
        // The body is read so that the connection goes back to the pool.
        Effect.flatMap((response) =>
          response.text
        ),
        Effect.timeoutFail({ duration: timeout, onTimeout: () => failed(`no answer in ${Duration.format(timeout)}`) }),
        Effect.catchTags({
          RequestError: (error) => Effect.fail(failed(`the request failed (${error.reason})`)),
          ResponseError: (error) => Effect.fail(failed(`answered ${error.response.status}`))
        }),
        Effect.asVoid
      ))
  })

/**
 * A service the host provides to hear alerts. Its failures are logged like any sink's.
 *
 * @since 0.1.0
 * @category Sinks
 */
export class AlertNotifier extends Context.Tag("plot-engine/AlertSink/AlertNotifier")<AlertNotifier, {
  readonly notify: (alert: Alert) => Effect.Effect<void, unknown>
}>() {}

/**
 * The host's `AlertNotifier` as a sink.
 *
 * @since 0.1.0
 * @category Sinks
 */
export const notifier: Effect.Effect<AlertSink, never, AlertNotifier> = Effect.map(
  AlertNotifier,
  (service) =>
    make(
      "notifier",
      (alert) =>
        Effect.mapError(service.notify(alert), (error) =>
          new AlertDeliveryError({ sink: "notifier", reason: error instanceof Error ? error.message : String(error) }))
    )
)

/**
 * The sinks the environment asks for: the log line always; a webhook when `PLOT_ENGINE_ALERT_WEBHOOK_URL` is set
 * (a secret: held as `Redacted`), within `PLOT_ENGINE_ALERT_WEBHOOK_TIMEOUT` (default `5 seconds`); and the host's
 * `AlertNotifier` when it is provided.
 *
 * @since 0.1.0
 * @category Config
 */
export const fromConfig: Effect.Effect<ReadonlyArray<AlertSink>, ConfigError.ConfigError, HttpClient.HttpClient> =
  Effect.gen(function*() {
    // Checked at start (it was only when the first alert was sent); a secret, so never quoted.
    const url = yield* Config.option(
      Config.redacted(ConfigValues.httpUrl("PLOT_ENGINE_ALERT_WEBHOOK_URL", "https://hooks.example.com/plot-engine"))
    )
    const timeout = yield* ConfigValues.duration("PLOT_ENGINE_ALERT_WEBHOOK_TIMEOUT", "refused").pipe(
      Config.withDefault(Duration.seconds(5))
    )
    const host = yield* Effect.serviceOption(AlertNotifier)
    const sinks: Array<AlertSink> = [log]
    if (Option.isSome(url)) sinks.push(yield* webhook(url.value, { timeout }))
    if (Option.isSome(host)) sinks.push(yield* Effect.provideService(notifier, AlertNotifier, host.value))
    return sinks
  })
