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
})
