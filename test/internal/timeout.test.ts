import { describe, expect, it, vi } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as Timeout from "../../src/internal/timeout.js"

describe("Timeout.timeoutFail", () => {
  it.effect("gives the effect's success, or its failure, when it ends in time", () =>
    Effect.gen(function*() {
      const ok = yield* Effect.fork(Timeout.timeoutFail(Effect.as(Effect.sleep("999 millis"), 42), 1_000, () => "late"))
      yield* TestClock.adjust("999 millis")
      expect(yield* Fiber.join(ok)).toBe(42)
      const failed = yield* Effect.exit(Timeout.timeoutFail(Effect.fail("boom"), 1_000, () => "late"))
      expect(failed).toEqual(Exit.fail("boom"))
    }))

  // A call due at the limit exactly ends in time: the limit's sleep is set before the call's own (a test clock wakes
  // the sleepers of one instant newest first).
  it.effect("gives the effect's success when it ends at the limit exactly", () =>
    Effect.gen(function*() {
      const fiber = yield* Effect.fork(
        Timeout.timeoutFail(Effect.as(Effect.sleep("1 second"), 42), 1_000, () => "late")
      )
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe(42)
    }))

  it.effect("fails at the limit exactly, after the effect was interrupted and had finished", () =>
    Effect.gen(function*() {
      const cleanedUp = yield* Ref.make(false)
      const slow = Effect.never.pipe(Effect.onInterrupt(() => Ref.set(cleanedUp, true)))
      const fiber = yield* Effect.fork(Timeout.timeoutFail(slow, 1_000, () => "late"))
      yield* TestClock.adjust("999 millis")
      expect(yield* Fiber.poll(fiber)).toEqual(Option.none())
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.await(fiber)).toEqual(Exit.fail("late"))
      expect(yield* Ref.get(cleanedUp)).toBe(true)
    }))

  it.effect("interrupts the effect, and waits for it, when the caller is interrupted", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const cleanedUp = yield* Ref.make(false)
      const slow = Deferred.succeed(started, undefined).pipe(
        Effect.zipRight(Effect.never),
        Effect.onInterrupt(() => Ref.set(cleanedUp, true))
      )
      const fiber = yield* Effect.fork(Timeout.timeoutFail(slow, 1_000, () => "late"))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(cleanedUp)).toBe(true)
    }))

  // A call that needs no waiting (a cache, a test's model) is over on the caller's stack, without a scheduler hop: a
  // fiber forked just before has not run yet when it ends.
  it.effect("ends a call that does not wait before any other fiber runs", () =>
    Effect.gen(function*() {
      const otherRan = yield* Ref.make(false)
      yield* Effect.fork(Ref.set(otherRan, true))
      expect(yield* Timeout.timeoutFail(Ref.get(otherRan), 1_000, () => "late")).toBe(false)
      expect(yield* Effect.exit(Timeout.timeoutFail(Effect.fail("boom"), 1_000, () => "late"))).toEqual(
        Exit.fail("boom")
      )
    }))

  it.effect("runs the effect with the caller's services and log annotations", () =>
    Effect.gen(function*() {
      const annotations = yield* Timeout.timeoutFail(Effect.logAnnotations, 1_000, () => "late").pipe(
        Effect.annotateLogs({ requestId: "gen_1" })
      )
      expect(annotations.pipe((map) => [...map])).toEqual([["requestId", "gen_1"]])
    }))

  it.effect("starts the call's fiber with its locals, made from the caller's values, and leaves the caller's", () =>
    Effect.gen(function*() {
      const annotate = (annotations: HashMap.HashMap<string, unknown>) => HashMap.set(annotations, "model", "gpt-4o")
      const [inside, outside] = yield* Effect.zip(
        Timeout.timeoutFail(Effect.logAnnotations, 1_000, () => "late", [[FiberRef.currentLogAnnotations, annotate]]),
        Effect.logAnnotations
      ).pipe(Effect.annotateLogs({ requestId: "gen_1" }))
      expect(Object.fromEntries(inside)).toEqual({ requestId: "gen_1", model: "gpt-4o" })
      expect(Object.fromEntries(outside)).toEqual({ requestId: "gen_1" })
    }))

  // On the real clock the limit is a plain timer rather than a sleeping fiber: it must ring, and be cleared.
  it.live("on the default clock, fails at the limit, and a call that ends first clears its timer", () =>
    Effect.gen(function*() {
      const late = yield* Effect.exit(Timeout.timeoutFail(Effect.never, 20, () => "late"))
      expect(late).toEqual(Exit.fail("late"))
      const pending = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length
      const before = pending()
      expect(yield* Timeout.timeoutFail(Effect.succeed(1), 60_000, () => "late")).toBe(1)
      expect(pending()).toBe(before)
    }))
})

describe("Timeout.watch", () => {
  /** A watch that fails the call once `limit` ms have passed since the first look, looking every `every` ms. */
  const deadline = (limit: number, every: number) => {
    const looks: Array<number> = []
    let startedAt: number | undefined
    const look = (now: number): Timeout.Verdict<string> => {
      looks.push(now)
      startedAt ??= now
      const left = startedAt + limit - now
      return left > 0 ? { _tag: "Wait", millis: Math.min(every, left) } : { _tag: "Fail", error: "late" }
    }
    return { looks, look }
  }

  // The last look is armed before the call (as `timeoutFail`'s limit is), so a test clock wakes the call's own sleep of
  // that instant first; a wait re-armed a second before it would be newer and fail the call.
  it.effect("gives the call's end when it is due at the last look exactly, and fails a call still running then", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const onTime = deadline(3_000, 1_000)
      const fiber = yield* Effect.fork(
        Timeout.watch(Effect.sleep("3 seconds"), () => onTime.look(clock.unsafeCurrentTimeMillis()), [], 3_000)
      )
      yield* TestClock.adjust("3 seconds")
      expect(yield* Fiber.join(fiber)).toBeUndefined()
      expect(onTime.looks).toEqual([0, 1_000, 2_000])
      const late = deadline(3_000, 1_000)
      const start = clock.unsafeCurrentTimeMillis()
      const hung = yield* Effect.fork(
        Timeout.watch(Effect.never, () => late.look(clock.unsafeCurrentTimeMillis() - start), [], 3_000)
      )
      yield* TestClock.adjust("3 seconds")
      expect(yield* Fiber.await(hung)).toEqual(Exit.fail("late"))
      expect(late.looks).toEqual([0, 1_000, 2_000, 3_000])
    }))

  it.effect("arms the waits asked for after the last look", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const looks: Array<number> = []
      const fiber = yield* Effect.fork(
        Timeout.watch(
          Effect.never,
          (): Timeout.Verdict<string> => {
            const now = clock.unsafeCurrentTimeMillis()
            looks.push(now)
            return now < 2_000 ? { _tag: "Wait", millis: 5_000 } : { _tag: "Fail", error: "late" }
          },
          [],
          1_000
        )
      )
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.await(fiber)).toEqual(Exit.fail("late"))
      // The first wait reached past the last look, which was left to look; the wait it asked for was armed.
      expect(looks).toEqual([0, 1_000, 6_000])
    }))

  it.effect("looks as the call starts and after each wait, and gives the call's end when it comes first", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const { look, looks } = deadline(10_000, 1_000)
      const fiber = yield* Effect.fork(
        Timeout.watch(Effect.sleep("2500 millis"), () => look(clock.unsafeCurrentTimeMillis()))
      )
      yield* TestClock.adjust("2500 millis")
      expect(yield* Fiber.join(fiber)).toBeUndefined()
      expect(looks).toEqual([0, 1_000, 2_000])
      // The watch stopped with the call: no look after it.
      yield* TestClock.adjust("10 seconds")
      expect(looks).toEqual([0, 1_000, 2_000])
      expect(yield* Effect.exit(Timeout.watch(Effect.fail("boom"), () => look(0)))).toEqual(Exit.fail("boom"))
    }))

  it.effect("fails the call when a look says so, once the call was interrupted and had finished", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const cleanedUp = yield* Ref.make(false)
      const { look } = deadline(1_500, 1_000)
      const slow = Effect.never.pipe(Effect.onInterrupt(() => Ref.set(cleanedUp, true)))
      const fiber = yield* Effect.fork(Timeout.watch(slow, () => look(clock.unsafeCurrentTimeMillis())))
      yield* TestClock.adjust("1499 millis")
      expect(yield* Fiber.poll(fiber)).toEqual(Option.none())
      yield* TestClock.adjust("1 millis")
      expect(yield* Fiber.await(fiber)).toEqual(Exit.fail("late"))
      expect(yield* Ref.get(cleanedUp)).toBe(true)
    }))

  it.effect("ends the call, as done, when a look says it is over", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const cleanedUp = yield* Ref.make(false)
      const slow = Effect.never.pipe(Effect.onInterrupt(() => Ref.set(cleanedUp, true)))
      const fiber = yield* Effect.fork(Timeout.watch(slow, (): Timeout.Verdict<string> =>
        clock.unsafeCurrentTimeMillis() < 1_000 ? { _tag: "Wait", millis: 1_000 } : { _tag: "End" }))
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.await(fiber)).toEqual(Exit.void)
      expect(yield* Ref.get(cleanedUp)).toBe(true)
      // A call whose first look already ends it is not started.
      let started = false
      yield* Timeout.watch(
        Effect.sync(() =>
          started = true
        ),
        () => ({ _tag: "End" })
      )
      expect(started).toBe(false)
    }))

  it.effect("interrupts the call, waits for it and stops looking when the caller is interrupted", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const started = yield* Deferred.make<void>()
      const cleanedUp = yield* Ref.make(false)
      const { look, looks } = deadline(10_000, 1_000)
      const slow = Deferred.succeed(started, undefined).pipe(
        Effect.zipRight(Effect.never),
        Effect.onInterrupt(() => Ref.set(cleanedUp, true))
      )
      const fiber = yield* Effect.fork(Timeout.watch(slow, () => look(clock.unsafeCurrentTimeMillis())))
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(cleanedUp)).toBe(true)
      yield* TestClock.adjust("10 seconds")
      expect(looks).toEqual([0])
    }))

  it.effect("runs the call in one fiber, with the caller's log annotations, on the caller's stack", () =>
    Effect.gen(function*() {
      const otherRan = yield* Ref.make(false)
      yield* Effect.fork(Ref.set(otherRan, true))
      const seen: Array<unknown> = []
      yield* Timeout.watch(
        Effect.flatMap(
          Effect.zip(Ref.get(otherRan), Effect.logAnnotations),
          ([ran, annotations]) => Effect.sync(() => seen.push(ran, Object.fromEntries(annotations)))
        ),
        () => ({ _tag: "Wait", millis: 1_000 })
      ).pipe(Effect.annotateLogs({ requestId: "gen_1" }))
      expect(seen).toEqual([false, { requestId: "gen_1" }])
    }))

  it.effect("starts the call's fiber with its locals, made from the caller's values", () =>
    Effect.gen(function*() {
      const annotate = (annotations: HashMap.HashMap<string, unknown>) => HashMap.set(annotations, "model", "gpt-4o")
      const seen: Array<unknown> = []
      yield* Timeout.watch(
        Effect.flatMap(Effect.logAnnotations, (inside) => Effect.sync(() => seen.push(Object.fromEntries(inside)))),
        () => ({ _tag: "Wait", millis: 1_000 }),
        [[FiberRef.currentLogAnnotations, annotate]]
      ).pipe(Effect.annotateLogs({ requestId: "gen_1" }))
      expect(seen).toEqual([{ requestId: "gen_1", model: "gpt-4o" }])
    }))

  it.effect("ends the call with the defect of a look that throws, and waits a millisecond at least", () =>
    Effect.gen(function*() {
      const clock = yield* Effect.clock
      const cleanedUp = yield* Ref.make(false)
      const slow = Effect.never.pipe(Effect.onInterrupt(() => Ref.set(cleanedUp, true)))
      let looks = 0
      const fiber = yield* Effect.fork(Timeout.watch(slow, (): Timeout.Verdict<string> => {
        looks++
        if (clock.unsafeCurrentTimeMillis() >= 3) throw new Error("a look that throws")
        return { _tag: "Wait", millis: 0 }
      }))
      yield* TestClock.adjust("3 millis")
      const exit = yield* Fiber.await(fiber)
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect(yield* Ref.get(cleanedUp)).toBe(true)
      // Waits of none were a millisecond each: looks at 0, 1, 2 and 3 ms.
      expect(looks).toBe(4)
    }))

  // On the real clock the waits are plain timers: they must ring, and be cleared.
  it.live("on the default clock, looks again after a wait, and a call that ends first clears its timer", () =>
    Effect.gen(function*() {
      let looks = 0
      const late = yield* Effect.exit(
        Timeout.watch(Effect.never, (): Timeout.Verdict<string> =>
          ++looks < 3 ? { _tag: "Wait", millis: 10 } : {
            _tag: "Fail",
            error: "late"
          })
      )
      expect(late).toEqual(Exit.fail("late"))
      expect(looks).toBe(3)
      // The watch's own timer, told apart from the runtime's (counting every pending timer was flaky under load).
      const setTimer = vi.spyOn(globalThis, "setTimeout")
      const clearTimer = vi.spyOn(globalThis, "clearTimeout")
      try {
        yield* Timeout.watch(Effect.sleep("5 millis"), () => ({ _tag: "Wait", millis: 60_000 }))
        const armed = setTimer.mock.results.filter((_, i) => setTimer.mock.calls[i]![1] === 60_000)
        expect(armed).toHaveLength(1)
        expect(clearTimer.mock.calls.map(([timer]) => timer)).toContain(armed[0]!.value)
      } finally {
        setTimer.mockRestore()
        clearTimer.mockRestore()
      }
    }))
})
