/**
 * Two limiter instances over one store, as a fleet over Redis is, in virtual time: with `QuotaSignals`, a provider
 * 429 met by one pauses the other for its retry-after and brings the other's limits down to the cut ones; its own
 * 429s of the same episode then cut nothing more. Without it, only the buckets are shared.
 */
import * as RateLimiter from "@effect/experimental/RateLimiter"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as QuotaSignals from "../src/QuotaSignals.js"

const target = { provider: "openai", model: "gpt-4.1" } as const
const small = { inputTokens: 10, outputTokens: 10 }
const quota = { requestsPerMinute: 60, tokensPerMinute: 1_000_000, maxConcurrent: 5 }

/** Two instances over one memory store; with `signals`, joined by in-process `QuotaSignals`. */
const twoInstances = (signals: boolean) =>
  Effect.gen(function*() {
    const shared = yield* Layer.build(
      signals ? Layer.merge(RateLimiter.layerStoreMemory, QuotaSignals.layerMemory) : RateLimiter.layerStoreMemory
    )
    const instance = Layer.build(ProviderRateLimiter.layerStore({ quotas: { openai: quota } })).pipe(
      Effect.provide(shared),
      Effect.map(Context.get(ProviderRateLimiter.ProviderRateLimiter))
    )
    const a = yield* instance
    const b = yield* instance
    // Both have used the key.
    for (let i = 0; i < 10; i++) {
      yield* a.withAdmission(target, small, () => Effect.void)
      yield* b.withAdmission(target, small, () => Effect.void)
    }
    // `another` builds one more instance over the same store (and signals), later.
    return { a, b, another: instance }
  })

const snapshotOf = (limiter: ProviderRateLimiter.ProviderRateLimiter["Type"]) =>
  Effect.map(limiter.snapshot, (snapshots) => snapshots[0]!)

describe("QuotaSignals", () => {
  it.scoped("a 429 met by one instance pauses the other until its retry-after", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoInstances(true)
      yield* a.pause(target, 10_000)
      expect((yield* snapshotOf(b)).pausedUntil).toBe(10_000)
      // A caller that may not wait out that pause is refused at once (the engine then moves to another model).
      const refused = yield* Effect.flip(b.withAdmission(target, small, () => Effect.void, { maxPause: 5_000 }))
      expect(refused).toMatchObject({ _tag: "RateLimitError", local: true, retryAfterMs: 10_000 })
      const admitted = yield* Effect.fork(b.withAdmission(target, small, () => Effect.void))
      yield* TestClock.adjust(9_999)
      expect(admitted.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      yield* Fiber.join(admitted)
    }))

  it.scoped("the limits a 429 cut come down on every instance, and the other's own 429 of the episode cuts no more", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoInstances(true)
      // A retry-after of 30 s: far past a request's spacing, so the 429 cuts.
      yield* a.pause(target, 30_000)
      const cutOnA = (yield* snapshotOf(a)).quota
      expect(cutOnA.requestsPerMinute).toBeLessThan(quota.requestsPerMinute)
      expect((yield* snapshotOf(b)).quota).toEqual(cutOnA)
      // b's call in flight meets its 429 of the same episode.
      yield* b.pause(target, 29_000)
      expect((yield* snapshotOf(b)).quota).toEqual(cutOnA)
      // And the limits climb back on both, in step: a minute after the pause, a twentieth of the configured limit.
      yield* TestClock.adjust(60_000)
      const climbedOnA = (yield* snapshotOf(a)).quota
      expect(climbedOnA.requestsPerMinute).toBe(cutOnA.requestsPerMinute + 3)
      expect((yield* snapshotOf(b)).quota).toEqual(climbedOnA)
    }))

  it.scoped("an instance that had not used the key yet takes what is left of the pause, and the cut, when it does", () =>
    Effect.gen(function*() {
      const { a, another } = yield* twoInstances(true)
      // A third instance, joined before the 429 but not using the key until 10 s after it.
      const late = yield* another
      yield* a.pause(target, 30_000)
      const cut = (yield* snapshotOf(a)).quota
      yield* TestClock.adjust(10_000)
      const admitted = yield* Effect.fork(late.withAdmission(target, small, () => Effect.void))
      yield* Effect.yieldNow()
      expect((yield* snapshotOf(late)).quota).toEqual(cut)
      expect((yield* snapshotOf(late)).pausedUntil).toBe(30_000)
      yield* TestClock.adjust(19_999)
      expect(admitted.unsafePoll()).toBeNull()
      yield* TestClock.adjust(1)
      yield* Fiber.join(admitted)
    }))

  it.scoped("without QuotaSignals the other instance is not paused (only the buckets are shared)", () =>
    Effect.gen(function*() {
      const { a, b } = yield* twoInstances(false)
      yield* a.pause(target, 30_000)
      const onB = yield* snapshotOf(b)
      expect(onB.pausedUntil).toBeUndefined()
      expect(onB.quota).toEqual(quota)
    }))
})
