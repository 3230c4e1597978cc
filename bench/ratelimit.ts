/**
 * Benchmark `ratelimit`: 400 requests (`RATELIMIT_REQUESTS`) of mixed sizes submitted at once against the simulator's in-process
 * face in virtual time, for an OpenAI-style quota (60 RPM, 90,000 TPM) and an Anthropic-style one (50 RPM,
 * 40,000 ITPM, 8,000 OTPM), through four variants: this limiter at the quota (`configured`), this limiter
 * configured 2x too high and learning from headers and 429s (`adaptive`), a naive polling limiter (`naive`), and
 * no limiter at all, only retries (`no-limiter`). Every variant retries a provider 429 after its retry-after.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { ProviderName } from "../src/Domain.js"
import type * as Errors from "../src/Errors.js"
import * as Classify from "../src/internal/classify.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import { generator } from "../src/simulator/Content.js"
import * as InProcess from "../src/simulator/InProcess.js"
import type { QuotaOptions } from "../src/simulator/Quotas.js"
import { percentile } from "./fixtures.js"
import { makeNaiveRateLimiter } from "./naive-limiter.js"
import { runInVirtualTime } from "./virtual-time.js"

const requestCount = Number(process.env.RATELIMIT_REQUESTS ?? 400)
/** Every call takes this long at the provider, so that concurrency matters as it does for real. */
const latencyMs = 2_000

interface Scenario {
  readonly name: ProviderName
  readonly model: string
  readonly simulator: QuotaOptions
  readonly quota: ProviderRateLimiter.Quota
}

const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "openai",
    model: "gpt-4.1",
    simulator: { openai: { requestsPerMinute: 60, tokensPerMinute: 90_000 } },
    quota: { requestsPerMinute: 60, tokensPerMinute: 90_000, maxConcurrent: 5 }
  },
  {
    name: "anthropic",
    model: "claude-sonnet-4-5",
    simulator: { anthropic: { requestsPerMinute: 50, inputTokensPerMinute: 40_000, outputTokensPerMinute: 8_000 } },
    quota: { requestsPerMinute: 50, inputTokensPerMinute: 40_000, outputTokensPerMinute: 8_000, maxConcurrent: 5 }
  }
]

const doubled = (quota: ProviderRateLimiter.Quota): ProviderRateLimiter.Quota => ({
  requestsPerMinute: quota.requestsPerMinute * 2,
  tokensPerMinute: quota.tokensPerMinute === undefined ? undefined : quota.tokensPerMinute * 2,
  inputTokensPerMinute: quota.inputTokensPerMinute === undefined ? undefined : quota.inputTokensPerMinute * 2,
  outputTokensPerMinute: quota.outputTokensPerMinute === undefined ? undefined : quota.outputTokensPerMinute * 2,
  maxConcurrent: quota.maxConcurrent
})

/** Mixed sizes: prompts of 500-6,000 tokens, max output 300-2,000 (seeded, the same for every variant). */
const workload = () => {
  const random = generator(2_000)
  return Array.from({ length: requestCount }, () => ({
    promptTokens: 500 + Math.floor(random() * 5_501),
    maxOutputTokens: 300 + Math.floor(random() * 1_701)
  }))
}

/** A prompt of exactly `tokens` o200k tokens (" word" is one token). */
const promptOf = (tokens: number) => "word" + " word".repeat(tokens - 1)

type Admit = (
  estimate: ProviderRateLimiter.Estimate,
  call: Effect.Effect<{ readonly inputTokens: number; readonly outputTokens: number }, Errors.ProviderError>
) => Effect.Effect<unknown, Errors.ProviderError | Errors.RateLimitError | Errors.QuotaExhaustedError>

interface Variant {
  readonly name: "configured" | "adaptive" | "naive" | "no-limiter"
  /** Builds the admission wrapper and what the simulator's answers feed back. */
  readonly make: (scenario: Scenario) => Effect.Effect<{
    readonly admit: Admit
    readonly onRateLimited: (retryAfterMs: number) => Effect.Effect<void>
    readonly onResponse: (headers: Readonly<Record<string, string>>) => Effect.Effect<void>
  }>
}

const limiterVariant = (
  name: "configured" | "adaptive",
  quota: (s: Scenario) => ProviderRateLimiter.Quota,
  adaptive: boolean
): Variant => ({
  name,
  make: (scenario) =>
    Effect.gen(function*() {
      const limiter = yield* ProviderRateLimiter.ProviderRateLimiter.pipe(
        Effect.provide(
          ProviderRateLimiter.layerMemory({
            quotas: { [scenario.name]: quota(scenario) },
            adaptive,
            queueTimeout: "1 day"
          })
        )
      )
      const target = { provider: scenario.name, model: scenario.model }
      return {
        admit: (estimate, call) =>
          Effect.scoped(Effect.gen(function*() {
            const admission = yield* limiter.admit(target, estimate)
            const usage = yield* call
            yield* admission.reconcile(usage)
          })),
        onRateLimited: (retryAfterMs) => limiter.pause(target, retryAfterMs),
        onResponse: (headers) => limiter.observe(target, headers)
      }
    })
})

const variants: ReadonlyArray<Variant> = [
  limiterVariant("configured", (s) => s.quota, false),
  limiterVariant("adaptive", (s) => doubled(s.quota), true),
  {
    name: "naive",
    make: (scenario) =>
      Effect.sync(() => {
        const tokens = (scenario.quota.tokensPerMinute ?? 0) + (scenario.quota.inputTokensPerMinute ?? 0) +
          (scenario.quota.outputTokensPerMinute ?? 0)
        const naive = makeNaiveRateLimiter({
          maxRequestsPerMinute: scenario.quota.requestsPerMinute,
          maxTokensPerMinute: tokens,
          maxConcurrentRequests: scenario.quota.maxConcurrent
        })
        return {
          admit: (estimate, call) => naive.execute(call, estimate.inputTokens + estimate.outputTokens),
          onRateLimited: () => Effect.void,
          onResponse: () => Effect.void
        }
      })
  },
  {
    name: "no-limiter",
    make: () =>
      Effect.succeed({ admit: (_, call) => call, onRateLimited: () => Effect.void, onResponse: () => Effect.void })
  }
]

const runOne = (scenario: Scenario, variant: Variant) =>
  runInVirtualTime(Effect.gen(function*() {
    const requests = workload()
    const wrapper = yield* variant.make(scenario)
    const simulator = InProcess.make({
      quotas: scenario.simulator,
      faults: { latencyMs },
      onResponse: (_, headers) => wrapper.onResponse(headers)
    })
    let provider429s = 0
    const random = generator(429)
    const used = { requests: 0, tokens: 0, inputTokens: 0, outputTokens: 0 }
    const waits: Array<number> = []
    // What each minute admitted, for the utilization-over-time chart.
    const perMinute: Array<{ requests: number; tokens: number; inputTokens: number; outputTokens: number }> = []
    yield* Effect.forEach(requests, (spec) =>
      Effect.gen(function*() {
        const model = yield* simulator.languageModel(scenario.name, scenario.model, {
          maxOutputTokens: spec.maxOutputTokens
        })
        const prompt = promptOf(spec.promptTokens)
        const call = Effect.gen(function*() {
          const startedAt = yield* Clock.currentTimeMillis
          const response = yield* LanguageModel.generateText({ prompt }).pipe(
            Effect.provideService(LanguageModel.LanguageModel, model),
            Effect.mapError((error) =>
              Classify.classify(error, { provider: scenario.name, model: scenario.model, nowMillis: startedAt })
            ),
            Effect.catchTag("ResponseParseError", () => Effect.dieMessage("no parsing in this benchmark"))
          )
          waits.push(startedAt)
          const minute =
            (perMinute[Math.floor(startedAt / 60_000)] ??= { requests: 0, tokens: 0, inputTokens: 0, outputTokens: 0 })
          minute.requests++
          minute.tokens += spec.promptTokens + spec.maxOutputTokens
          minute.inputTokens += spec.promptTokens
          minute.outputTokens += response.usage.outputTokens ?? 0
          return { inputTokens: response.usage.inputTokens ?? 0, outputTokens: response.usage.outputTokens ?? 0 }
        })
        const estimate = { inputTokens: spec.promptTokens, outputTokens: spec.maxOutputTokens }
        let retries = 0
        while (true) {
          const outcome = yield* Effect.either(wrapper.admit(estimate, call))
          if (outcome._tag === "Right") break
          const error = outcome.left
          if (error._tag !== "RateLimitError" || error.local) {
            return yield* Effect.dieMessage(`unexpected ${error._tag}: ${error.message}`)
          }
          provider429s++
          retries++
          const retryAfterMs = error.retryAfterMs ?? 1_000
          yield* wrapper.onRateLimited(retryAfterMs)
          // The engine's rate-limit rule: 1 s x 2^n + up to 1 s of jitter, capped at 60 s, floored by retry-after.
          const backoff = Math.min(1_000 * 2 ** (retries - 1) + Math.floor(random() * 1_000), 60_000)
          yield* Effect.sleep(Math.max(retryAfterMs, backoff))
        }
        used.requests++
        used.tokens += spec.promptTokens + spec.maxOutputTokens
        used.inputTokens += spec.promptTokens
        used.outputTokens += spec.maxOutputTokens
      }), { concurrency: "unbounded", discard: true })
    const drainMillis = yield* Clock.currentTimeMillis
    const minutes = drainMillis / 60_000
    const q = scenario.quota
    // Utilization of the binding quota: how much of the tightest budget the drain used (the provider counts
    // prompt plus max output for OpenAI tokens; Anthropic's output bucket was corrected to what was written).
    const utilization = Math.max(
      used.requests / (q.requestsPerMinute * minutes),
      q.tokensPerMinute === undefined ? 0 : used.tokens / (q.tokensPerMinute * minutes),
      q.inputTokensPerMinute === undefined ? 0 : used.inputTokens / (q.inputTokensPerMinute * minutes),
      q.outputTokensPerMinute === undefined ? 0 : simulator.counts.outputTokens / (q.outputTokensPerMinute * minutes)
    )
    // Each whole minute's use of its tightest budget, in percent.
    const series = Array.from({ length: Math.floor(minutes) }, (_, i) => {
      const m = perMinute[i] ?? { requests: 0, tokens: 0, inputTokens: 0, outputTokens: 0 }
      return Math.round(
        100 * Math.max(
          m.requests / q.requestsPerMinute,
          q.tokensPerMinute === undefined ? 0 : m.tokens / q.tokensPerMinute,
          q.inputTokensPerMinute === undefined ? 0 : m.inputTokens / q.inputTokensPerMinute,
          q.outputTokensPerMinute === undefined ? 0 : m.outputTokens / q.outputTokensPerMinute
        )
      )
    })
    return {
      series,
      scenario: scenario.name,
      name: variant.name,
      requests: used.requests,
      utilization: Number(utilization.toFixed(4)),
      provider429s,
      p50WaitMs: Math.round(percentile(waits, 50)),
      p99WaitMs: Math.round(percentile(waits, 99)),
      drainMinutes: Number(minutes.toFixed(2))
    }
  })).value

export const run = () => {
  const results = []
  const series: Record<string, ReadonlyArray<number>> = {}
  const only = process.env.RATELIMIT_VARIANTS?.split(",")
  for (const scenario of scenarios) {
    for (const variant of variants.filter((v) => only === undefined || only.includes(v.name))) {
      const started = performance.now()
      const { series: minutes, ...result } = runOne(scenario, variant)
      results.push({ ...result, wallSeconds: Number(((performance.now() - started) / 1_000).toFixed(1)) })
      series[`${scenario.name}/${variant.name}`] = minutes
      console.error(`  ratelimit ${scenario.name}/${variant.name}: ${JSON.stringify(result)}`)
    }
  }
  return { variants: results, utilizationPerMinute: series }
}
