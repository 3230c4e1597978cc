import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../src/Alerts.js"

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
