/**
 * Virtual time for benchmarks: a `Clock` whose sleeps wait in a queue, and a `ControlledScheduler` that runs
 * every ready fiber before the clock moves on to the next wake-up. Unlike `TestClock`, which polls that all
 * fibers are suspended (costly with thousands of them), this knows it exactly: the scheduler's queue is empty.
 * It runs effects that do no real I/O, synchronously, as fast as the CPU allows.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scheduler from "effect/Scheduler"
import * as MinHeap from "../src/internal/minHeap.js"

interface Sleeper {
  readonly at: number
  readonly seq: number
  readonly wake: () => void
  cancelled: boolean
}

const before = (a: Sleeper, b: Sleeper) => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/**
 * Runs an effect in virtual time and returns its value and how much virtual time it took.
 */
export const runInVirtualTime = <A, E>(effect: Effect.Effect<A, E>): { readonly value: A; readonly millis: number } => {
  let now = 0
  let seq = 0
  const sleepers = new MinHeap.MinHeap(before)
  const clock: Clock.Clock = {
    [Clock.ClockTypeId]: Clock.ClockTypeId,
    unsafeCurrentTimeMillis: () => now,
    unsafeCurrentTimeNanos: () => BigInt(Math.round(now * 1_000_000)),
    currentTimeMillis: Effect.sync(() => now),
    currentTimeNanos: Effect.sync(() => BigInt(Math.round(now * 1_000_000))),
    sleep: (duration) =>
      Effect.async<void>((resume) => {
        const sleeper: Sleeper = {
          at: now + Duration.toMillis(duration),
          seq: seq++,
          wake: () => resume(Effect.void),
          cancelled: false
        }
        sleepers.push(sleeper)
        return Effect.sync(() => {
          sleeper.cancelled = true
        })
      })
  }
  const scheduler = new Scheduler.ControlledScheduler()
  const fiber = Effect.runFork(effect.pipe(Effect.withClock(clock), Effect.withScheduler(scheduler)))
  while (true) {
    while (scheduler.tasks.buckets.length > 0) scheduler.step()
    const exit = fiber.unsafePoll()
    if (exit !== null) {
      if (Exit.isSuccess(exit)) return { value: exit.value, millis: now }
      throw new Error(`the benchmark failed: ${String(exit.cause)}`)
    }
    let next = sleepers.pop()
    while (next !== undefined && next.cancelled) next = sleepers.pop()
    if (next === undefined) throw new Error("the benchmark is stuck: no fiber is ready and none is sleeping")
    now = Math.max(now, next.at)
    next.wake()
    // Everybody due at the same instant wakes before anyone runs.
    while (sleepers.peek() !== undefined && sleepers.peek()!.at <= now) {
      const due = sleepers.pop()!
      if (!due.cancelled) due.wake()
    }
  }
}
