/**
 * `Effect.timeoutFail` for a call, at the cost of one fiber, started on the caller's stack. Effect's races the
 * effect against a sleep in two child fibers, each forked with a copy of the caller's `FiberRef`s and started on the
 * scheduler (a hop each way, which cost a third of a warm generation on an instant model), and joins the winner's
 * back. Here the call runs in one fiber, started at once on this stack as `Effect.runSync` would: a call that ends
 * without waiting (a cache, a test's model) is over before the caller would have suspended, and costs no hop. The
 * limit counts from the call's start; a call that waits is awaited under a plain timer on the default clock, the
 * clock's sleep on another (see `startLimit`). `watch` runs a call the same way under a limit that moves with what the
 * call does (a stream's silence limits).
 *
 * The call's fiber inherits the caller's context, `FiberRef`s and runtime flags, as a forked child would; its
 * `FiberRef`s are not joined back (a call changes none that outlive it). It is not a child in the caller's scope (a
 * `Supervisor` sees it start without a parent, and `Fiber.children` of the caller does not list it), so the caller
 * interrupts it itself: past the limit or when a watch ends or fails it (awaited before the caller goes on), and when
 * the caller is interrupted (the call's fiber is known to the finalizer before the caller may be interrupted again).
 *
 * @internal
 */
import * as Arr from "effect/Array"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import type * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as RuntimeFlags from "effect/RuntimeFlags"

/** The clock a fiber has when nobody provided another. */
const defaultClock: Clock.Clock = Effect.runSync(Effect.clock)

/** The longest delay a Node timer keeps (longer ones would fire at once); the default clock never wakes past it. */
const maxTimerMillis = 2 ** 31 - 1

/** The limit of one call, started with it. */
interface Limit {
  /** Calls `fire` once the limit falls (at once when it has); only once per limit. */
  readonly onFall: (fire: () => void) => void
  readonly cancel: () => void
}

/**
 * A limit of `millis` on `clock`, from now. On the default clock it is a plain timer, set only when the caller has to
 * wait (a call that ends without waiting costs none), for what is left of `millis` then. On another clock (a test's
 * `TestClock`) its sleep starts at once, in a fiber that inherits nothing, before any sleep of the call's own: a call
 * due at the limit exactly ends in time, as it did when the call was a forked child.
 */
const startLimit = (clock: Clock.Clock, millis: number): Limit => {
  if (clock === defaultClock) {
    const startedAt = clock.unsafeCurrentTimeMillis()
    let cancel: (() => void) | undefined
    return {
      onFall: (fire) => {
        cancel = arm(clock, millis - (clock.unsafeCurrentTimeMillis() - startedAt), fire)
      },
      cancel: () => cancel?.()
    }
  }
  let fallen = false
  let onFallen: (() => void) | undefined
  const cancel = arm(clock, millis, () => {
    fallen = true
    onFallen?.()
  })
  return {
    onFall: (fire) => {
      if (fallen) fire()
      else onFallen = fire
    },
    cancel
  }
}

/** A `FiberRef` the call's fiber starts with, its value made from the caller's. */
export type Local<A = any> = readonly [FiberRef.FiberRef<A>, (callers: A) => A]

const noLocals: ReadonlyArray<Local> = []

/**
 * `self`, failing with `onTimeout()` when it takes longer than `millis` on the `Clock`. `self` always runs in a fiber
 * of its own, whose `FiberRef`s end with it; `locals` are set in it as it is made (its log annotations, its headers
 * observer: one copy of the caller's `FiberRef`s, where a `FiberRef.set` in it would make one each).
 */
export const timeoutFail = <A, E, R, E1>(
  self: Effect.Effect<A, E, R>,
  millis: number,
  onTimeout: () => E1,
  locals: ReadonlyArray<Local> = noLocals
): Effect.Effect<A, E | E1, R> =>
  Effect.withFiberRuntime<A, E | E1, R>((caller, { runtimeFlags }) =>
    Effect.uninterruptibleMask((restore) => {
      const limit = startLimit(Context.get(caller.currentDefaultServices, Clock.Clock), millis)
      return endOfCall(startCall(caller, runtimeFlags, self, locals), restore, {
        whenDue: (stop) => limit.onFall(() => stop(Effect.fail(onTimeout()))),
        cancel: limit.cancel
      })
    })
  )

/**
 * The end of a call just started: at once when it needed no waiting (the stopper cancelled), else awaited until it
 * ends or `stopper` stops it; a caller interrupted meanwhile interrupts the call.
 */
const endOfCall = <A, E, E1>(
  call: Fiber.RuntimeFiber<A, E>,
  restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>,
  stopper: Stopper<A, E1>
): Effect.Effect<A, E | E1> => {
  const ended = call.unsafePoll()
  if (ended !== null) {
    stopper.cancel()
    return ended
  }
  return Effect.onInterrupt(restore(awaitCall(call, stopper)), () => Fiber.interrupt(call))
}

/**
 * `self` in a fiber of its own, started at once on this stack, with the caller's context, `FiberRef`s and flags.
 * The call's failure is its caller's to read and tell: the runtime's own line for a fiber that ends failed ("Fiber
 * terminated with an unhandled error", at debug level) would repeat each failed attempt's error, so the call's
 * fiber writes none.
 */
const startCall = <A, E, R>(
  caller: Fiber.RuntimeFiber<unknown, unknown>,
  runtimeFlags: RuntimeFlags.RuntimeFlags,
  self: Effect.Effect<A, E, R>,
  locals: ReadonlyArray<Local>
): Fiber.RuntimeFiber<A, E> =>
  Runtime.runFork(
    Runtime.make({
      context: caller.currentContext as Context.Context<R>,
      fiberRefs: caller.getFiberRefs(),
      runtimeFlags
    })
  )(self, { updateRefs: withLocals(Arr.prepend(locals, noRuntimeLine)) })

const noRuntimeLine: Local<Option.Option<LogLevel.LogLevel>> = [
  FiberRef.unhandledErrorLogLevel,
  () => Option.none()
]

const withLocals =
  (locals: Arr.NonEmptyReadonlyArray<Local>) =>
  (refs: FiberRefs.FiberRefs, fiberId: FiberId.Runtime): FiberRefs.FiberRefs =>
    FiberRefs.updateManyAs(refs, {
      entries: Arr.map(locals, ([ref, make]) => [ref, [[fiberId, make(FiberRefs.getOrDefault(refs, ref))]]] as const)
    })

/**
 * What stops a call that takes too long: calls `whenDue`'s function once, when it is due, with what the caller gets
 * instead of the call's end; `cancel` cancels its timer (the call ended first, or the caller was interrupted).
 */
interface Stopper<A, E> {
  readonly whenDue: (stop: (instead: Effect.Effect<A, E>) => void) => void
  readonly cancel: () => void
}

/** The call's end, or once `stopper` stopped it, its interruption (awaited) and then what the stopper gave instead. */
const awaitCall = <A, E, E1>(call: Fiber.RuntimeFiber<A, E>, stopper: Stopper<A, E1>): Effect.Effect<A, E | E1> =>
  Effect.async<A, E | E1>((resume) => {
    let settled = false
    stopper.whenDue((instead) => {
      if (settled) return
      settled = true
      resume(Effect.zipRight(Fiber.interrupt(call), instead))
    })
    call.addObserver((exit) => {
      if (settled) return
      settled = true
      stopper.cancel()
      resume(exit)
    })
    // Interrupted: the stopper goes; the caller's finalizer interrupts the call.
    return Effect.sync(() => {
      settled = true
      stopper.cancel()
    })
  })

/**
 * What a watch finds each time it looks at a call: wait `millis` and look again, end the call (it succeeds, what it was
 * doing cut short), or fail it with `error`.
 */
export type Verdict<E> =
  | { readonly _tag: "Wait"; readonly millis: number }
  | { readonly _tag: "End" }
  | { readonly _tag: "Fail"; readonly error: E }

/**
 * `self`, watched by `look`: the watch looks before the call starts, then again after each wait it asks for, until
 * it ends or fails the call (interrupted and awaited first), or the call ends by itself (a first look that decides
 * does not start the call). A look that throws ends the call with that defect. Waits under a millisecond are a
 * millisecond. Limits that move with what the call does (a stream's silence) without a racing fiber: the call runs
 * in one fiber with its `locals`, as in `timeoutFail`, and the waits are plain timers on the default clock (a
 * sleeping fiber that inherits nothing on another).
 *
 * `lastLookMillis`, when given, is a look at that many milliseconds from the start (the call's whole limit), armed
 * before the call starts as `timeoutFail`'s limit is: a call whose end is due at that instant exactly ends in time
 * on a test clock (which wakes the sleepers of one instant newest first), and no wait asked for reaches past it.
 */
export const watch = <E, R, E1>(
  self: Effect.Effect<void, E, R>,
  look: () => Verdict<E1>,
  locals: ReadonlyArray<Local> = noLocals,
  lastLookMillis?: number
): Effect.Effect<void, E | E1, R> =>
  Effect.withFiberRuntime<void, E | E1, R>((caller, { runtimeFlags }) =>
    Effect.uninterruptibleMask((restore) => {
      const watcher = startWatcher(Context.get(caller.currentDefaultServices, Clock.Clock), look, lastLookMillis)
      const decided = watcher.decided()
      if (decided !== undefined) return verdictOf(decided)
      return endOfCall(startCall(caller, runtimeFlags, self, locals), restore, {
        whenDue: (stop) => watcher.onDecided((decided) => stop(verdictOf(decided))),
        cancel: watcher.cancel
      })
    })
  )

/** What a watch decided: a look's end or failure, or the defect a look threw. */
type Decided<E> = Exclude<Verdict<E>, { readonly _tag: "Wait" }> | { readonly _tag: "Die"; readonly defect: unknown }

const verdictOf = <E>(decided: Decided<E>): Effect.Effect<void, E> =>
  decided._tag === "End"
    ? Effect.void
    : decided._tag === "Fail"
    ? Effect.fail(decided.error)
    : Effect.die(decided.defect)

/**
 * Looks once now, again after each wait, and at the last look if there is one; tells `onDecided` (once) when a look
 * ends or fails the call. Once cancelled or decided it looks no more, even if a timer that was due already queued
 * its look.
 */
const startWatcher = <E>(clock: Clock.Clock, look: () => Verdict<E>, lastLookWanted: number | undefined) => {
  // None past what a Node timer keeps (`arm` would set none): the waits asked for reach the limit then, as before.
  const lastLookMillis = lastLookWanted !== undefined && (clock !== defaultClock || lastLookWanted <= maxTimerMillis)
    ? lastLookWanted
    : undefined
  // Infinity once the last look came (or when there is none): the waits after it are armed as they are asked for.
  let lastLookAt = lastLookMillis === undefined ? Infinity : clock.unsafeCurrentTimeMillis() + lastLookMillis
  let cancelTimer: (() => void) | undefined
  let cancelLastLook: (() => void) | undefined
  let cancelled = false
  let decided: Decided<E> | undefined
  let onDecided: ((decided: Decided<E>) => void) | undefined
  const step = () => {
    if (cancelled || decided !== undefined) return
    cancelTimer?.()
    cancelTimer = undefined
    let verdict: Verdict<E> | Decided<E>
    try {
      verdict = look()
    } catch (defect) {
      verdict = { _tag: "Die", defect }
    }
    if (verdict._tag === "Wait") {
      // At least a millisecond: a wait of none would look again at once, without end. A wait that reaches the last
      // look is left to it.
      const millis = Math.max(1, verdict.millis)
      if (clock.unsafeCurrentTimeMillis() + millis < lastLookAt) cancelTimer = arm(clock, millis, step)
    } else {
      decided = verdict
      cancelLastLook?.()
      onDecided?.(verdict)
    }
  }
  if (lastLookMillis !== undefined) {
    cancelLastLook = arm(clock, lastLookMillis, () => {
      lastLookAt = Infinity
      step()
    })
  }
  step()
  return {
    decided: () => decided,
    cancel: () => {
      cancelled = true
      cancelTimer?.()
      cancelLastLook?.()
    },
    onDecided: (f: (decided: Decided<E>) => void) => {
      if (decided !== undefined) f(decided)
      else onDecided = f
    }
  }
}

/** Calls `fire` once `millis` have passed on `clock`; the function returned cancels it. */
const arm = (clock: Clock.Clock, millis: number, fire: () => void): () => void => {
  if (clock === defaultClock) {
    if (millis > maxTimerMillis) return () => {}
    const timer = setTimeout(fire, Math.max(0, millis))
    return () => clearTimeout(timer)
  }
  const sleeper = Effect.runFork(clock.sleep(Duration.millis(millis)))
  sleeper.addObserver((exit) => {
    if (Exit.isSuccess(exit)) fire()
  })
  return () => sleeper.unsafeInterruptAsFork(FiberId.none)
}
