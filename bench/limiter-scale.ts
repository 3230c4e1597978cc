/**
 * Benchmark `limiter-scale`: 10,000 and 100,000 requests queued at once in the rate limiter (a budget of 1,000
 * requests a minute, so nearly all of them wait), in virtual time. Reports the memory each queued waiter takes
 * and how many admissions per second of CPU the limiter makes while the queue drains; then, on the real clock,
 * the CPU the process uses while they wait (no polling: next to none).
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

const scale = (waiters: number) => {
  let queuedHeap = 0
  let baseline = 0
  const started = performance.now()
  const cpuStart = process.cpuUsage()
  const { millis } = runInVirtualTime(Effect.gen(function*() {
    const limiter = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(
      Effect.provide(ProviderRateLimiter.layerMemory({
        quotas: { openai: { requestsPerMinute: 1_000, tokensPerMinute: 1_000_000_000, maxConcurrent: waiters } },
        queueTimeout: "1 day"
      }))
    )
    baseline = heapUsed()
    const target = { provider: "openai", model: "gpt-4.1" } as const
    let admitted = 0
    const all = Effect.forEach(
      Array.from({ length: waiters }),
      () =>
        Effect.scoped(
          Effect.zipRight(limiter.admit(target, { inputTokens: 100, outputTokens: 100 }), Effect.sync(() => admitted++))
        ),
      {
        concurrency: "unbounded",
        discard: true
      }
    )
    const fiber = yield* Effect.fork(all)
    // Once every waiter has reserved its turn and sleeps, the queue is at its longest.
    yield* Effect.sleep("1 millis")
    queuedHeap = heapUsed()
    yield* fiber.await
    return yield* Clock.currentTimeMillis
  }))
  const wallSeconds = (performance.now() - started) / 1_000
  const cpu = process.cpuUsage(cpuStart)
  return {
    waiters,
    bytesPerWaiter: Math.round((queuedHeap - baseline) / (waiters - 1_000)),
    admissionsPerSecond: Math.round(waiters / wallSeconds),
    cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(2)),
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
        quotas: { openai: { requestsPerMinute: 1, tokensPerMinute: 1_000_000_000, maxConcurrent: waiters } },
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

export const run = async () => ({
  runs: [scale(10_000), scale(100_000)],
  idle: [await idleCpu(10_000), await idleCpu(100_000)]
})
