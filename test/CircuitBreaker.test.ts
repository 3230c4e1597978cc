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
      // The 1,025th key: the cooled-down circuit goes (closed, as a new key's), then the oldest up to half; the probe
      // out stays, and so do the newest.
      yield* breaker.trip("pinned-1022", "10 minutes")
      expect(yield* breaker.state("cooled")).toBe("closed")
      expect(yield* breaker.state("pinned-0")).toBe("closed")
      expect(yield* breaker.state("probed")).toBe("half_open")
      expect(yield* breaker.tryAcquire("probed")).toBe(false)
      expect(yield* breaker.state("pinned-1021")).toBe("open")
      expect(yield* breaker.state("pinned-1022")).toBe("open")
    }))

  // Closed circuits are no entries: a call to a healthy key must not copy the map of the open ones.
  it.effect("leaves its state as it is for calls to a healthy key: no copy of the open circuits' map", () =>
    Effect.gen(function*() {
      const breaker = yield* CircuitBreaker.make({ threshold: 3 })
      for (let i = 0; i < 1_000; i++) yield* breaker.trip(`pinned-${i}`, "10 minutes")
      const RealMap = globalThis.Map
      let copies = 0
      class CountingMap<K, V> extends RealMap<K, V> {
        constructor(entries?: Iterable<readonly [K, V]> | null) {
          super(entries)
          if (entries) copies++
        }
      }
      globalThis.Map = CountingMap as MapConstructor
      try {
        for (let i = 0; i < 100; i++) {
          yield* breaker.tryAcquire("healthy")
          yield* breaker.onSuccess("healthy")
        }
      } finally {
        globalThis.Map = RealMap
      }
      // Found by review: 200 copies of the 1,000 entries.
      expect(copies).toBe(0)
      expect(yield* breaker.state("pinned-999")).toBe("open")
    }))
})
