/**
 * Benchmark `limiter-scale`: 1,000, 10,000 and 100,000 requests queued at once in the rate limiter as users
 * configure it (`maxConcurrent` 5, a budget of 100 requests a minute, so all but the first 100 wait), in virtual
 * time, each a fiber calling `withAdmission` as the engine does. Reports the memory each queued waiter takes (its
 * fiber included) and how many admissions per second of CPU the run makes while the queue drains.
 *
 * The same run measures a floor: the same fibers, queued in the least a limiter can be (an array of `Effect.async`
 * resumes, one timer admitting the next every 600 ms). What a fiber costs to suspend, resume and end, and the
 * garbage its end leaves, is the floor's cost; the limiter's own cost per admission is the difference. Each waiter's
 * fiber is forked on its own, as a server's requests are (see `runAll`). Then `admit`
 * in a scope (`Effect.scoped`, what a scope costs a waiter), and on the real clock, the CPU the process uses while
 * they wait (no polling: next to none).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import { runInVirtualTime } from "./virtual-time.js"

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const heapUsed = () => {
  gc()
  return process.memoryUsage().heapUsed
}

const cpuSecondsSince = (start: NodeJS.CpuUsage) => {
  const cpu = process.cpuUsage(start)
  return (cpu.user + cpu.system) / 1e6
}

const maxConcurrent = 5
const requestsPerMinute = 100
const target = { provider: "openai", model: "gpt-4.1" } as const
const estimate = { inputTokens: 100, outputTokens: 100 }

const limiterLayer = ProviderRateLimiter.layerMemory({
  quotas: { openai: { requestsPerMinute, tokensPerMinute: 1_000_000_000, maxConcurrent } },
  queueTimeout: "1 day"
})

/**
 * Runs `one` in `waiters` fibers, each forked on its own as a server's requests are, and waits for them all; fails
 * when one fails. Not `Effect.forEach` with unbounded concurrency: it keeps every ended fiber and its exit until the
 * last one ends, then merges the `FiberRef`s of each into its own, several microseconds per waiter of the drain's
 * CPU (and a heap that does not shrink as the queue drains) that are the harness's, not a limiter's.
 */
const runAll = (waiters: number, one: Effect.Effect<unknown, unknown>): Effect.Effect<void, unknown> =>
  Effect.suspend(() => {
    let running = waiters
    let failure: Exit.Exit<unknown, unknown> | undefined
    let done: ((ended: Effect.Effect<void, unknown>) => void) | undefined
    const ended = (exit: Exit.Exit<unknown, unknown>) => {
      if (Exit.isFailure(exit)) failure ??= exit
      if (--running === 0) done?.(failure === undefined ? Effect.void : Effect.asVoid(failure))
    }
    return Effect.zipRight(
      Effect.repeatN(
        Effect.flatMap(Effect.forkDaemon(one), (fiber) => Effect.sync(() => fiber.addObserver(ended))),
        waiters - 1
      ),
      Effect.async<void, unknown>((resume) => {
        if (running === 0) resume(failure === undefined ? Effect.void : Effect.asVoid(failure))
        else done = resume
      })
    )
  })

/** How a waiter waits: what the engine does, in a scope, or in the floor's bare queue. */
type Way = "withAdmission" | "scoped admit" | "floor"

/**
 * `waiters` fibers queued at once, the way `way` says: bytes per queued waiter, and the drain's CPU per admission
 * (of those that waited: all but the first minute's budget).
 */
const drain = (waiters: number, way: Way) => {
  let queuedHeap = 0
  let baseline = 0
  let drainStart = process.cpuUsage()
  const { millis } = runInVirtualTime(Effect.gen(function*() {
    const limiter = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(Effect.provide(limiterLayer))
    const resumes: Array<(admitted: Effect.Effect<void>) => void> = []
    let next = 0
    const one = way === "withAdmission"
      ? limiter.withAdmission(target, estimate, () => Effect.void)
      : way === "scoped admit"
      ? Effect.scoped(limiter.admit(target, estimate))
      : Effect.async<void>((resume) => {
        resumes.push(resume)
      })
    baseline = heapUsed()
    const fiber = yield* Effect.fork(runAll(waiters, one))
    // Once the first minute's budget is admitted, the queue is at its longest.
    yield* Effect.sleep("1 millis")
    queuedHeap = heapUsed()
    drainStart = process.cpuUsage()
    if (way === "floor") {
      // The first minute's budget at once, as the limiter admits it; then one every 600 ms.
      while (next < requestsPerMinute) resumes[next++]!(Effect.void)
      yield* Effect.forkDaemon(Effect.forever(Effect.zipRight(
        Effect.sleep(60_000 / requestsPerMinute),
        Effect.sync(() => {
          if (next < resumes.length) resumes[next++]!(Effect.void)
        })
      )))
    }
    yield* fiber.await
    return yield* Clock.currentTimeMillis
  }))
  const queued = waiters - requestsPerMinute
  return {
    bytesPerWaiter: Math.round((queuedHeap - baseline) / queued),
    cpuSeconds: cpuSecondsSince(drainStart),
    queued,
    virtualMinutes: Number((millis / 60_000).toFixed(1))
  }
}

const scale = (waiters: number) => {
  const limiter = drain(waiters, "withAdmission")
  const floor = drain(waiters, "floor")
  const admissionsPerCpuSecond = Math.round(limiter.queued / limiter.cpuSeconds)
  const floorAdmissionsPerCpuSecond = Math.round(floor.queued / floor.cpuSeconds)
  const limiterCpuUs = (limiter.cpuSeconds - floor.cpuSeconds) * 1e6 / limiter.queued
  return {
    waiters,
    maxConcurrent,
    bytesPerWaiter: limiter.bytesPerWaiter,
    floorBytesPerWaiter: floor.bytesPerWaiter,
    admissionsPerCpuSecond,
    floorAdmissionsPerCpuSecond,
    /** The limiter's own CPU per admission: the run's over the floor's (noise can make it negative when small). */
    limiterCpuUsPerAdmission: Number(limiterCpuUs.toFixed(1)),
    drainCpuSeconds: Number(limiter.cpuSeconds.toFixed(2)),
    virtualMinutes: limiter.virtualMinutes
  }
}

/**
 * CPU used while `waiters` requests sit queued, on the real clock: a budget of one request a minute holds them
 * all; two seconds of waiting are measured, then they are interrupted. A polling limiter would burn CPU here.
 */
const idleCpu = (waiters: number) =>
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const limiter = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(
      Effect.provide(ProviderRateLimiter.layerMemory({
        // A wait foreseen past the queue timeout is refused at once: 100,000 waiters at one a minute need 70 days.
        quotas: { openai: { requestsPerMinute: 1, tokensPerMinute: 1_000_000_000, maxConcurrent } },
        queueTimeout: "1000 days"
      }))
    )
    yield* Effect.forkScoped(
      Effect.forEach(
        Array.from({ length: waiters }),
        () => Effect.ignore(limiter.withAdmission(target, estimate, () => Effect.void)),
        {
          concurrency: "unbounded",
          discard: true
        }
      )
    )
    // Let every waiter queue (on a busy machine 100,000 take seconds), then measure.
    const queued = Effect.map(limiter.snapshot, (keys) => keys[0]?.queued ?? 0)
    while ((yield* queued) < waiters - 1) yield* Effect.sleep("200 millis")
    yield* Effect.sleep("500 millis")
    // The collector's work on the runs before (heaps of gigabytes) is not this limiter's.
    gc()
    yield* Effect.sleep("500 millis")
    const cpuStart = process.cpuUsage()
    yield* Effect.sleep("2 seconds")
    const cpu = process.cpuUsage(cpuStart)
    return { waiters, cpuMsPerSecondWhileWaiting: Number(((cpu.user + cpu.system) / 1_000 / 2).toFixed(2)) }
  })))

export const run = async () => {
  // Warms the JIT, so that the first size is not charged with compiling the code paths.
  drain(2_000, "withAdmission")
  drain(2_000, "floor")
  const runs = [scale(1_000), scale(10_000), scale(100_000)]
  const largest = runs[2]!
  const scoped = drain(10_000, "scoped admit")
  return {
    runs,
    /** Admissions per CPU-second at 100,000 over those at 1,000: 1 when the cost does not grow with the queue. */
    rateAt100kOver1k: Number((largest.admissionsPerCpuSecond / runs[0]!.admissionsPerCpuSecond).toFixed(2)),
    /** The run's rate over the floor's, at 100,000: 1 when the limiter costs nothing beyond its callers' fibers. */
    rateOverFloorAt100k: Number((largest.admissionsPerCpuSecond / largest.floorAdmissionsPerCpuSecond).toFixed(2)),
    scopedAdmitBytesPerWaiterAt10k: scoped.bytesPerWaiter,
    goals: { admissionsPerCpuSecondAt100k: 30_000, bytesPerWaiterAt100k: 10_240, rateAt100kOver1k: 0.5 },
    idle: [await idleCpu(10_000), await idleCpu(100_000)]
  }
}
