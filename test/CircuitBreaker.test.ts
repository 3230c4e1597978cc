import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import * as CircuitBreaker from "../src/CircuitBreaker.js"

describe("CircuitBreaker", () => {
  it.effect("opens after the threshold, half-opens after the cool-down for exactly one probe", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ threshold: 3, cooldown: "30 seconds" })
      expect(yield* breaker.onFailure("m")).toBeUndefined()
      expect(yield* breaker.onFailure("m")).toBeUndefined()
      expect(yield* breaker.onFailure("m")).toBe("open")
      expect(yield* breaker.tryAcquire("m")).toBe(false)
      yield* TestClock.adjust("29999 millis")
      expect(yield* breaker.state("m")).toBe("open")
      yield* TestClock.adjust("1 millis")
      expect(yield* breaker.state("m")).toBe("half_open")
      expect(yield* breaker.tryAcquire("m")).toBe(true)
      expect(yield* breaker.tryAcquire("m")).toBe(false)
      expect(yield* breaker.onFailure("m")).toBe("open")
      yield* TestClock.adjust("30 seconds")
      expect(yield* breaker.tryAcquire("m")).toBe(true)
      expect(yield* breaker.onSuccess("m")).toBe("closed")
      expect(yield* breaker.tryAcquire("m")).toBe(true)
    }))

  it.effect("a trip opens the circuit at once, for its own cool-down; a failed probe then uses the breaker's", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ threshold: 3, cooldown: "30 seconds" })
      expect(yield* breaker.trip("m", "10 minutes")).toBe("open")
      expect(yield* breaker.trip("m", "10 minutes")).toBeUndefined()
      yield* TestClock.adjust("599999 millis")
      expect(yield* breaker.state("m")).toBe("open")
      yield* TestClock.adjust("1 millis")
      expect(yield* breaker.tryAcquire("m")).toBe(true)
      expect(yield* breaker.onFailure("m")).toBe("open")
      yield* TestClock.adjust("30 seconds")
      expect(yield* breaker.state("m")).toBe("half_open")
      expect(yield* breaker.state("other")).toBe("closed")
    }))

  it.effect("a success resets the count of consecutive failures", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ threshold: 2 })
      yield* breaker.onFailure("m")
      yield* breaker.onSuccess("m")
      expect(yield* breaker.onFailure("m")).toBeUndefined()
      expect(yield* breaker.state("m")).toBe("closed")
    }))

  it.effect("a released probe lets the next one through", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ threshold: 1, cooldown: "1 second" })
      yield* breaker.onFailure("m")
      yield* TestClock.adjust("1 second")
      expect(yield* breaker.tryAcquire("m")).toBe(true)
      expect(yield* breaker.tryAcquire("m")).toBe(false)
      yield* breaker.release("m")
      expect(yield* breaker.tryAcquire("m")).toBe(true)
    }))

  // A request may pin any model, and each one its provider does not serve is tripped: the breaker keeps 1,024 keys.
  it.effect("keeps at most 1,024 keys: the cooled-down ones go first, then the oldest; a probe out is kept", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ threshold: 3, cooldown: "30 seconds" })
      yield* breaker.trip("probed", "1 second")
      yield* breaker.trip("cooled", "1 second")
      yield* TestClock.adjust("1 second")
      expect(yield* breaker.tryAcquire("probed")).toBe(true)
      for (let i = 0; i < 1_022; i++) yield* breaker.trip(`pinned-${i}`, "10 minutes")
      expect(yield* breaker.state("cooled")).toBe("half_open")
      // The 1,025th key: the cooled-down circuit goes (its next call is a probe, as it would have been), then the
      // oldest up to half; the probe out stays, and so do the newest.
      yield* breaker.trip("pinned-1022", "10 minutes")
      expect(yield* breaker.state("cooled")).toBe("closed")
      expect(yield* breaker.state("pinned-0")).toBe("closed")
      expect(yield* breaker.state("probed")).toBe("half_open")
      expect(yield* breaker.tryAcquire("probed")).toBe(false)
      expect(yield* breaker.state("pinned-1021")).toBe("open")
      expect(yield* breaker.state("pinned-1022")).toBe("open")
    }))
})
