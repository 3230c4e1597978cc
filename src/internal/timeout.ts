/**
 * `Effect.timeoutFail` for a call, at the cost of one fiber. Effect's races the effect against a sleep in two
 * child fibers, each forked with a copy of the caller's `FiberRef`s, and joins the winner's back (a diff of every
 * one the child touched, its context included). Here the call runs in one child, and the caller waits for
 * whichever comes first: the child's end, or the clock's sleep. On the default clock the sleep is a plain timer;
 * on another (a test's `TestClock`) it is that clock's sleep, in a fiber of its own that inherits nothing. The
 * child's `FiberRef`s are not joined back: a call changes none that outlive it. Past the limit, the child is
 * interrupted, and awaited, before the failure; an interrupted caller interrupts the child and awaits it.
 *
 * @internal
 */
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"

/** The clock a fiber has when nobody provided another. */
const defaultClock: Clock.Clock = Effect.runSync(Effect.clock)

/** The longest delay a Node timer keeps (longer ones would fire at once); the default clock never wakes past it. */
const maxTimerMillis = 2 ** 31 - 1

/** Calls `fire` after `millis` on `clock`; the function returned cancels it. */
const schedule = (clock: Clock.Clock, millis: number, fire: () => void): () => void => {
  if (clock === defaultClock) {
    if (millis > maxTimerMillis) return () => {}
    const timer = setTimeout(fire, millis)
    return () => clearTimeout(timer)
  }
  const sleeper = Effect.runFork(clock.sleep(Duration.millis(millis)))
  sleeper.addObserver((exit) => {
    if (Exit.isSuccess(exit)) fire()
  })
  return () => sleeper.unsafeInterruptAsFork(FiberId.none)
}

/**
 * `self`, failing with `onTimeout()` when it takes longer than `millis` on the `Clock`. `self` always runs in a fiber
 * of its own, whose `FiberRef`s end with it: a call may set its own (its log annotations, its headers observer).
 */
export const timeoutFail = <A, E, R, E1>(
  self: Effect.Effect<A, E, R>,
  millis: number,
  onTimeout: () => E1
): Effect.Effect<A, E | E1, R> =>
  Effect.clockWith((clock) =>
    Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Effect.fork(restore(self)), (child) =>
        restore(Effect.async<A, E | E1>((resume) => {
          let settled = false
          const cancelTimer = schedule(clock, millis, () => {
            if (settled) return
            settled = true
            resume(Effect.zipRight(Fiber.interrupt(child), Effect.fail(onTimeout())))
          })
          child.addObserver((exit) => {
            if (settled) return
            settled = true
            cancelTimer()
            resume(exit)
          })
          return Effect.suspend(() => {
            settled = true
            cancelTimer()
            return Fiber.interrupt(child)
          })
        })))
    )
  )
