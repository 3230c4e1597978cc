/**
 * Benchmark `limiter-scale`: 1,000, 10,000 and 100,000 requests queued at once in the rate limiter as users
 * configure it (`maxConcurrent` 5, a budget of 100 requests a minute, so all but the first 100 wait), in virtual
 * time. Reports the memory each queued waiter takes (the caller's fiber included) and how many admissions per
 * second of CPU the limiter makes while the queue drains; then, on the real clock, the CPU the process uses while
 * they wait (no polling: next to none).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
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

const scale = (waiters: number) => {
  let queuedHeap = 0
  let baseline = 0
  let drainStart = process.cpuUsage()
  const { millis } = runInVirtualTime(Effect.gen(function*() {
    const limiter = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(
      Effect.provide(ProviderRateLimiter.layerMemory({
        quotas: { openai: { requestsPerMinute, tokensPerMinute: 1_000_000_000, maxConcurrent } },
        queueTimeout: "1 day"
      }))
    )
    baseline = heapUsed()
    const target = { provider: "openai", model: "gpt-4.1" } as const
    const all = Effect.forEach(
      Array.from({ length: waiters }),
      () => Effect.scoped(limiter.admit(target, { inputTokens: 100, outputTokens: 100 })),
      { concurrency: "unbounded", discard: true }
    )
    const fiber = yield* Effect.fork(all)
    // Once the first minute's budget is admitted, the queue is at its longest.
    yield* Effect.sleep("1 millis")
    queuedHeap = heapUsed()
    drainStart = process.cpuUsage()
    yield* fiber.await
    return yield* Clock.currentTimeMillis
  }))
  const drainCpuSeconds = cpuSecondsSince(drainStart)
  const queued = waiters - requestsPerMinute
  return {
    waiters,
    maxConcurrent,
    bytesPerWaiter: Math.round((queuedHeap - baseline) / queued),
    admissionsPerCpuSecond: Math.round(queued / drainCpuSeconds),
    drainCpuSeconds: Number(drainCpuSeconds.toFixed(2)),
    virtualMinutes: Number((millis / 60_000).toFixed(1))
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
        quotas: { openai: { requestsPerMinute: 1, tokensPerMinute: 1_000_000_000, maxConcurrent } },
        queueTimeout: "1 day"
      }))
    )
    const target = { provider: "openai", model: "gpt-4.1" } as const
    yield* Effect.forkScoped(Effect.forEach(Array.from({ length: waiters }), () =>
      Effect.scoped(limiter.admit(target, { inputTokens: 100, outputTokens: 100 })), {
      concurrency: "unbounded",
      discard: true
    }))
    // Let every waiter queue, then measure.
    yield* Effect.sleep("2 seconds")
    const cpuStart = process.cpuUsage()
    yield* Effect.sleep("2 seconds")
    const cpu = process.cpuUsage(cpuStart)
    return { waiters, cpuMsPerSecondWhileWaiting: Number(((cpu.user + cpu.system) / 1_000 / 2).toFixed(2)) }
  })))

export const run = async () => {
  const runs = [scale(1_000), scale(10_000), scale(100_000)]
  const largest = runs[2]!
  return {
    runs,
    /** Admissions per CPU-second at 100,000 waiters over those at 1,000: 1 when the cost does not grow with the queue. */
    rateAt100kOver1k: Number((largest.admissionsPerCpuSecond / runs[0]!.admissionsPerCpuSecond).toFixed(2)),
    goals: { admissionsPerCpuSecondAt100k: 30_000, bytesPerWaiterAt100k: 10_240, rateAt100kOver1k: 0.5 },
    idle: [await idleCpu(10_000), await idleCpu(100_000)]
  }
}
