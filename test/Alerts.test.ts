import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as Queue from "effect/Queue"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../src/Alerts.js"
import * as AlertSink from "../src/AlertSink.js"

const ok = (durationMs = 1_000): Alerts.Observation => ({ outcome: "success", durationMs, rateLimitErrors: 0 })
const failed: Alerts.Observation = { outcome: "failure", durationMs: 1_000, rateLimitErrors: 0 }
const template: Alerts.Observation = { outcome: "template", durationMs: 1_000, rateLimitErrors: 0 }

/** Records observations and collects the alert events that follow, over `advance` of virtual time. */
const scenario = (
  steps: ReadonlyArray<Alerts.Observation>,
  last: Alerts.Observation,
  advance: Duration.DurationInput
) =>
  Effect.gen(function*() {
    const alerts = yield* Alerts.Alerts
    const collected = yield* Stream.runCollect(alerts.events.pipe(Stream.take(2))).pipe(Effect.fork)
    yield* Effect.yieldNow()
    for (const step of steps) yield* alerts.record(step)
    yield* TestClock.adjust("1 second")
    const beforeLast = yield* alerts.active
    yield* alerts.record(last)
    yield* TestClock.adjust("1 millis")
    const afterLast = yield* alerts.active
    yield* TestClock.adjust(advance)
    const events = Chunk.toArray(yield* Fiber.join(collected))
    return { beforeLast, afterLast, events }
  }).pipe(Effect.provide(Alerts.layer()))

describe("Alerts", () => {
  it.effect("rate-limit errors: 10 in a minute do not fire, 11 do, and the alert resolves when the minute has passed", () =>
    Effect.gen(function*() {
      const { afterLast, beforeLast, events } = yield* scenario(
        [{ outcome: "success", durationMs: 500, rateLimitErrors: 10 }],
        { outcome: "success", durationMs: 500, rateLimitErrors: 1 },
        "2 minutes"
      )
      expect(beforeLast).toEqual([])
      expect(afterLast).toEqual(["rate_limit_errors"])
      expect(events).toEqual([
        { _tag: "Raised", rule: "rate_limit_errors", value: 11, threshold: 10, at: 1_000 },
        // The first observation (at 0) leaves the window at 60 s: 1 error is left, below the threshold.
        { _tag: "Resolved", rule: "rate_limit_errors", value: 1, threshold: 10, at: 60_000 }
      ])
    }))

  it.effect("error rate: 5 % in 5 minutes does not fire, above it does, and it resolves when the window has passed", () =>
    Effect.gen(function*() {
      const { afterLast, beforeLast, events } = yield* scenario([...Array(19).fill(ok()), failed], failed, "10 minutes")
      expect(beforeLast).toEqual([])
      expect(afterLast).toEqual(["error_rate"])
      expect(events[0]).toMatchObject({ _tag: "Raised", rule: "error_rate", threshold: 0.05, at: 1_000 })
      expect(events[0]!.value).toBeCloseTo(2 / 21, 10)
      // Everything recorded at 0 leaves at 300 s; the failure at 1 s stays: 1 of 1 (still firing) until 301 s.
      expect(events[1]).toEqual({ _tag: "Resolved", rule: "error_rate", value: 0, threshold: 0.05, at: 301_000 })
    }))

  it.effect("mean latency: 10 s does not fire, above it does, and it resolves when the window has passed", () =>
    Effect.gen(function*() {
      const { afterLast, beforeLast, events } = yield* scenario([ok(10_000), ok(10_000)], ok(10_003), "10 minutes")
      expect(beforeLast).toEqual([])
      expect(afterLast).toEqual(["mean_latency"])
      expect(events).toEqual([
        { _tag: "Raised", rule: "mean_latency", value: 10_001, threshold: 10_000, at: 1_000 },
        { _tag: "Resolved", rule: "mean_latency", value: 0, threshold: 10_000, at: 301_000 }
      ])
    }))

  it.effect("a window's older observations leaving it resolve an alert but never raise one: only a new one can", () =>
    Effect.gen(function*() {
      const alerts = yield* Alerts.Alerts
      const collected = yield* Stream.runCollect(alerts.events.pipe(Stream.take(2))).pipe(Effect.fork)
      yield* Effect.yieldNow()
      // A burst: ten fast calls, then one slow one 30 s later; the mean, 5.5 s, is under 10 s.
      for (let i = 0; i < 10; i++) yield* alerts.record(ok(1_000))
      yield* TestClock.adjust("30 seconds")
      yield* alerts.record(ok(50_000))
      // At 5 minutes the fast ones leave: the slow one alone would read 50 s. Before, raised then, with no traffic.
      yield* TestClock.adjust("5 minutes")
      expect(yield* alerts.active).toEqual([])
      // A new observation is new evidence: a slow one raises it (the 50 s one has just left), and it resolves as it
      // leaves the window in turn.
      yield* alerts.record(ok(20_000))
      yield* TestClock.adjust("10 minutes")
      expect(Chunk.toArray(yield* Fiber.join(collected)).map((e) => [e._tag, e.rule, e.at])).toEqual([
        ["Raised", "mean_latency", 330_000],
        ["Resolved", "mean_latency", 630_000]
      ])
    }).pipe(Effect.provide(Alerts.layer())))

  it.effect("template rate: 20 % does not fire, above it does, and it resolves when the window has passed", () =>
    Effect.gen(function*() {
      const { afterLast, beforeLast, events } = yield* scenario(
        [ok(), ok(), ok(), ok(), template],
        template,
        "10 minutes"
      )
      expect(beforeLast).toEqual([])
      expect(afterLast).toEqual(["template_rate"])
      expect(events[0]).toMatchObject({ _tag: "Raised", rule: "template_rate", at: 1_000 })
      expect(events[0]!.value).toBeCloseTo(2 / 6, 10)
      expect(events[1]).toEqual({ _tag: "Resolved", rule: "template_rate", value: 0, threshold: 0.2, at: 301_000 })
    }))
})

/** A sink that hands each alert to the test, in order. */
const queueSink = (name: string) =>
  Effect.map(Queue.unbounded<AlertSink.Alert>(), (queue) => ({
    queue,
    sink: AlertSink.make(name, (alert) => Queue.offer(queue, alert))
  }))

const rateLimited = (count: number): Alerts.Observation => ({
  outcome: "success",
  durationMs: 500,
  rateLimitErrors: count
})

/** Lets the delivery fibers run. */
const settle = Effect.repeatN(Effect.yieldNow(), 20)

/**
 * Closes `scope` as a finalizer would, with deliveries still under way: the close starts (its drain timeout is
 * on the clock), then the clock moves by `advance`.
 */
const closeAfter = (scope: Scope.CloseableScope, advance: Duration.DurationInput) =>
  Effect.gen(function*() {
    const sleepsBefore = (yield* TestClock.sleeps()).length
    const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
    while ((yield* TestClock.sleeps()).length === sleepsBefore) yield* Effect.yieldNow()
    yield* TestClock.adjust(advance)
    return closing
  })

describe("Alerts sinks", () => {
  it.scoped("an episode is raised once and resolved once, however many observations it lasts", () =>
    Effect.gen(function*() {
      const { queue, sink } = yield* queueSink("test")
      const alerts = yield* Alerts.make(Alerts.defaultThresholds, { sinks: [sink] })
      yield* alerts.record(rateLimited(11))
      // Still firing all along: more errors at 10 s, 20 s and 30 s raise nothing more.
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("10 seconds")
        yield* alerts.record(rateLimited(5))
      }
      yield* settle
      expect(yield* Queue.takeAll(queue)).toEqual(Chunk.of({
        rule: "rate_limit_errors",
        state: "raised",
        value: 11,
        threshold: 10,
        at: "1970-01-01T00:00:00.000Z"
      }))
      // At 60 s the first 11 leave the window: 15 are left, still above 10. At 70 s, 10: resolved.
      yield* TestClock.adjust("30 seconds")
      yield* settle
      expect(Chunk.toArray(yield* Queue.takeAll(queue))).toEqual([])
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(Chunk.toArray(yield* Queue.takeAll(queue))).toEqual([
        { rule: "rate_limit_errors", state: "resolved", value: 10, threshold: 10, at: "1970-01-01T00:01:10.000Z" }
      ])
      // Nothing more once resolved, until a new episode.
      yield* TestClock.adjust("10 minutes")
      yield* settle
      expect(Chunk.toArray(yield* Queue.takeAll(queue))).toEqual([])
      yield* alerts.record(rateLimited(12))
      yield* settle
      expect(Chunk.toArray(yield* Queue.takeAll(queue))).toEqual([
        { rule: "rate_limit_errors", state: "raised", value: 12, threshold: 10, at: "1970-01-01T00:11:10.000Z" }
      ])
    }))

  it.effect("a sink that hangs or fails holds up neither the observations nor the other sinks", () =>
    Effect.gen(function*() {
      const { queue, sink } = yield* queueSink("test")
      const hanging = AlertSink.make("hanging", () => Effect.never)
      const failing = AlertSink.make(
        "failing",
        () => Effect.fail(new AlertSink.AlertDeliveryError({ sink: "failing", reason: "answered 500" }))
      )
      const scope = yield* Scope.make()
      const alerts = yield* Alerts.make(Alerts.defaultThresholds, { sinks: [hanging, failing, sink] }).pipe(
        Scope.extend(scope)
      )
      yield* alerts.record(rateLimited(11))
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect(Chunk.toArray(yield* Queue.takeAll(queue)).map((a) => a.state)).toEqual(["raised", "resolved"])
      expect(yield* alerts.active).toEqual([])
      // Closing gives the hanging sink its drain timeout, 5 seconds, and no more.
      const closing = yield* closeAfter(scope, "5 seconds")
      yield* Fiber.join(closing)
    }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.make(() => {})))))

  it.effect("a failed delivery is a warning naming the sink and the reason", () => {
    const lines: Array<string> = []
    return Effect.gen(function*() {
      const failing = AlertSink.make(
        "failing",
        () => Effect.fail(new AlertSink.AlertDeliveryError({ sink: "failing", reason: "answered 500" }))
      )
      yield* Effect.scoped(Effect.gen(function*() {
        const alerts = yield* Alerts.make(Alerts.defaultThresholds, { sinks: [failing] })
        yield* alerts.record(rateLimited(11))
        yield* settle
      }))
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^WARN Alert raised: rate_limit_errors was not delivered to the failing sink/)
      expect(lines[0]).toContain("The failing sink could not deliver the alert: answered 500")
    }).pipe(
      Effect.provide(Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ cause, logLevel, message }) =>
          lines.push(`${logLevel.label} ${String(message)} ${Cause.pretty(cause)}`)
        )
      ))
    )
  })

  it.effect("closing waits for the deliveries under way, at most drainTimeout", () =>
    Effect.gen(function*() {
      const delivered: Array<string> = []
      const slow = AlertSink.make("slow", (alert) =>
        Effect.zipRight(Effect.sleep("2 seconds"), Effect.sync(() => delivered.push(alert.state))))
      const hanging = AlertSink.make("hanging", () =>
        Effect.never)
      const scope = yield* Scope.make()
      const alerts = yield* Alerts.make(Alerts.defaultThresholds, { sinks: [slow, hanging], drainTimeout: "5 seconds" })
        .pipe(Scope.extend(scope))
      yield* alerts.record(rateLimited(11))
      yield* settle
      const closing = yield* closeAfter(scope, "2 seconds")
      yield* settle
      // The slow sink delivered while closing; the close still waits for the hanging one.
      expect(delivered).toEqual(["raised"])
      expect(closing.unsafePoll()).toBeNull()
      yield* TestClock.adjust("2999 millis")
      yield* settle
      expect(closing.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(closing)
    }))

  it.effect("a drainTimeout of 0 closes at once, a sink still delivering: a test need not move the clock", () =>
    Effect.gen(function*() {
      const hanging = AlertSink.make("hanging", () => Effect.never)
      const scope = yield* Scope.make()
      const alerts = yield* Alerts.make(Alerts.defaultThresholds, { sinks: [hanging], drainTimeout: 0 })
        .pipe(Scope.extend(scope))
      yield* alerts.record(rateLimited(11))
      yield* settle
      yield* Scope.close(scope, Exit.void)
    }))
})
