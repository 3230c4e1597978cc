/**
 * `Timeout.watch` on the default clock with a last look past the longest timer Node keeps, under fake timers: in a file
 * of its own, since the fake timers also hold the tasks Effect's scheduler sets while they are installed.
 */
import { expect, it, vi } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Timeout from "../../src/internal/timeout.js"

// A Node timer keeps at most 2^31 - 1 ms (about 24.9 days; `PLOT_ENGINE_ATTEMPT_TIMEOUT` may be set longer): no last
// look is armed past it, and the waits asked for must then reach the limit themselves (found by review: they were
// dropped as the last look's, and the watch never decided).
it("on the default clock, with a last look past the longest timer, the waits asked for reach the limit", async () => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] })
  try {
    const total = 2 ** 31 + 10_000
    const start = Date.now()
    const look = (): Timeout.Verdict<string> => {
      const left = start + total - Date.now()
      return left > 0 ? { _tag: "Wait", millis: Math.min(1_000, left) } : { _tag: "Fail", error: "late" }
    }
    const fiber = Effect.runFork(Timeout.watch(Effect.never, look, [], total))
    await vi.advanceTimersByTimeAsync(10)
    // As if the call had run for 24.9 days: 3 s before its limit.
    vi.setSystemTime(start + total - 3_000)
    await vi.advanceTimersByTimeAsync(60_000)
    expect(fiber.unsafePoll()).toEqual(Exit.fail("late"))
  } finally {
    vi.useRealTimers()
  }
})
