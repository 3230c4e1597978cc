/**
 * Buckets over a remote store when the store goes away: the local stand-in starts at its share of what the store
 * last said the bucket held, debt included (a fleet at its quota has reservations ahead of the refill), and the
 * store is told what was taken locally when it answers again. A fake store, in virtual time.
 */
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as TestClock from "effect/TestClock"
import * as TokenBuckets from "../../src/internal/tokenBuckets.js"

/** A store whose bucket holds `level` (it may be in debt), and which fails while `down`. */
const fakeStore = (state: { level: number; down: boolean; taken: Array<number> }): RateLimiter.RateLimiter => ({
  [RateLimiter.TypeId]: RateLimiter.TypeId,
  consume: (options) => {
    if (state.down) return Effect.fail(new RateLimiter.RateLimitStoreError({ message: "store away" }))
    const tokens = options.tokens ?? 1
    state.level -= tokens
    state.taken.push(tokens)
    return Effect.succeed({
      delay: Duration.millis(state.level >= 0 ? 0 : -state.level * 1_000),
      limit: options.limit,
      remaining: state.level,
      resetAfter: Duration.zero
    })
  }
})

const bucketsOver = (limiter: RateLimiter.RateLimiter) =>
  Effect.map(Effect.clock, (clock) =>
    TokenBuckets.make(limiter, Duration.minutes(1), clock, {
      timeoutMillis: 1_000,
      localShare: 0.5,
      retryAfterMillis: 5_000,
      unavailable: Metric.counter("test_store_unavailable")
    }))

describe("TokenBuckets over a store that goes away", () => {
  it.effect("a store in debt leaves the local bucket in debt: no burst when the store goes", () =>
    Effect.gen(function*() {
      const store = { level: -19, down: false, taken: [] as Array<number> }
      const buckets = yield* bucketsOver(fakeStore(store))
      // The store says the bucket is 20 in debt (a minute's limit of 60: 20 s of refill ahead).
      expect((yield* buckets.take("rpm", 60, 1)).remaining).toBe(-20)
      store.down = true
      // Locally, half of that debt, against a bucket of 30: a request waits, where a full local bucket let it go.
      const local = yield* buckets.take("rpm", 60, 1)
      expect(local.remaining).toBe(-11)
      expect(local.delay).toBeGreaterThan(0)
    }))

  it.effect("when the store answers again it is told what was taken locally, at most the local share", () =>
    Effect.gen(function*() {
      const store = { level: 60, down: false, taken: [] as Array<number> }
      const buckets = yield* bucketsOver(fakeStore(store))
      yield* buckets.take("rpm", 60, 10)
      store.down = true
      for (let i = 0; i < 5; i++) yield* buckets.take("rpm", 60, 2)
      store.down = false
      // The store is asked again 5 s after it failed.
      yield* TestClock.adjust("5 seconds")
      yield* buckets.take("rpm", 60, 1)
      yield* TestClock.adjust("10 millis")
      // The 1 of this take, and the 10 taken while it was away.
      expect(store.taken.slice(1)).toEqual([1, 10])
    }))
})

describe("TokenBuckets in memory, with keys that come and go", () => {
  // A bucket refilled to its limit is as a new one: forgotten once there are 4,096, so that the buckets of keys used
  // once (a model pinned by one request) do not pile up. One still refilling keeps its level.
  it("forgets the buckets refilled to their limits, and keeps the level of one still refilling", () => {
    const memory = TokenBuckets.memory({ unsafeCurrentTimeMillis: () => 0 } as never, Duration.minutes(1))
    const buckets = memory.local!
    const minute = 60_000
    buckets.take("in-debt", 10, 10, 0)
    buckets.take("in-debt", 10, 5, 0)
    buckets.take("half-refilled", 10, 10, minute / 2)
    for (let i = 0; i < 4_094; i++) buckets.take(`pinned-${i}`, 10, 1, 0)
    // A new key at one minute, with 4,096 kept: the sweep. A refill of 10 in a minute leaves the bucket in debt at 5 and
    // the one emptied half a minute ago at 5; the others were full again.
    expect(memory.size()).toBe(4_096)
    expect(buckets.take("new", 10, 0, minute).remaining).toBe(10)
    // The two still refilling and the new one are kept.
    expect(memory.size()).toBe(3)
    expect(buckets.level("in-debt", 10, minute)).toBe(5)
    expect(buckets.level("half-refilled", 10, minute)).toBe(5)
    expect(buckets.level("pinned-0", 10, minute)).toBe(10)
  })
})
