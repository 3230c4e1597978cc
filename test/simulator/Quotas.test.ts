import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../../src/Alerts.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as Core from "../../src/simulator/Core.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import * as InProcess from "../../src/simulator/InProcess.js"
import * as Quotas from "../../src/simulator/Quotas.js"
import { sampleProject } from "../utils/fixtures.js"

describe("Quotas", () => {
  it("admits OpenAI-style requests while both buckets hold them, with the real headers", () => {
    const quotas = Quotas.make({ openai: { requestsPerMinute: 2, tokensPerMinute: 10_000 } })
    const ask = (now: number) =>
      quotas.admit("openai", "k", "gpt-4.1", { inputTokens: 1_000, maxOutputTokens: 1_000 }, now)
    const first = ask(0)
    expect(first._tag).toBe("Admitted")
    expect(first.headers).toMatchObject({
      "x-ratelimit-limit-requests": "2",
      "x-ratelimit-remaining-requests": "1",
      "x-ratelimit-limit-tokens": "10000",
      "x-ratelimit-remaining-tokens": "8000",
      "x-ratelimit-reset-requests": "30s",
      "x-ratelimit-reset-tokens": "12s"
    })
    expect(ask(0)._tag).toBe("Admitted")
    const third = ask(0)
    expect(third._tag === "Limited" && [third.bucket, third.retryAfterMs, third.headers["retry-after-ms"]]).toEqual([
      "requests",
      30_000,
      "30000"
    ])
    expect(ask(30_000)._tag).toBe("Admitted")
  })

  it("counts Anthropic output at max_tokens, then corrects it with what was written", () => {
    const quotas = Quotas.make({
      anthropic: { requestsPerMinute: 100, inputTokensPerMinute: 100_000, outputTokensPerMinute: 1_000 }
    })
    const ask = () => quotas.admit("anthropic", "k", "claude-sonnet-4-5", { inputTokens: 100, maxOutputTokens: 800 }, 0)
    const first = ask()
    expect(first._tag).toBe("Admitted")
    const limited = ask()
    expect(limited._tag === "Limited" && [limited.bucket, limited.headers["retry-after"]]).toEqual([
      "output tokens",
      "36"
    ])
    if (first._tag === "Admitted") first.settle(100, 0)
    expect(ask()._tag).toBe("Admitted")
  })

  it("calls a request larger than a bucket too large, not rate limited", () => {
    const quotas = Quotas.make({ openai: { requestsPerMinute: 10, tokensPerMinute: 1_000 } })
    const limited = quotas.admit("openai", "k", "gpt-4.1", { inputTokens: 900, maxOutputTokens: 500 }, 0)
    expect(limited._tag === "Limited" && Core.quotaFault(limited).kind).toBe("request_too_large")
  })

  it("sends no rate-limit header when told not to, and a 429 keeps its retry-after", () => {
    const quotas = Quotas.make({ openai: { requestsPerMinute: 1, tokensPerMinute: 10_000 }, rateLimitHeaders: false })
    const ask = () => quotas.admit("openai", "k", "gpt-4.1", { inputTokens: 10, maxOutputTokens: 10 }, 0)
    expect(ask().headers).toEqual({})
    const limited = ask()
    expect(limited._tag === "Limited" && [limited.retryAfterMs, limited.headers]).toEqual([
      60_000,
      { "retry-after-ms": "60000", "retry-after": "60" }
    ])
  })

  it("writes resets as Go durations", () => {
    expect([Quotas.goDuration(20), Quotas.goDuration(1_000), Quotas.goDuration(360_000), Quotas.goDuration(61_500)])
      .toEqual(["20ms", "1s", "6m0s", "1m1.5s"])
  })
})

describe("the HTTP face with quotas", () => {
  it.scopedLive("sends the rate-limit headers on every answer and a 429 past the quota", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const post = () =>
        Effect.promise(() =>
          fetch(`${simulator.openaiBaseUrl}/responses`, {
            method: "POST",
            headers: { authorization: "Bearer k", "content-type": "application/json" },
            body: JSON.stringify({ model: "gpt-4.1", input: "A plot for Mara", max_output_tokens: 100 })
          })
        )
      const ok = yield* post()
      expect(ok.status).toBe(200)
      expect(ok.headers.get("x-ratelimit-remaining-requests")).toBe("0")
      const limited = yield* post()
      expect(limited.status).toBe(429)
      expect(Number(limited.headers.get("retry-after-ms"))).toBeGreaterThan(59_000)
      expect((yield* Effect.promise(() => limited.json())).error.code).toBe("rate_limit_exceeded")
      // What the answers asked of the quota: the prompt's tokens and the max output, for the one answered.
      const stats = yield* simulator.stats
      expect(stats.byStatus).toEqual({ 200: 1, 429: 1 })
      expect(stats.requestedTokens).toBe(stats.inputTokens + 100)
    }).pipe(
      Effect.provide(
        Layer.merge(
          GatewaySimulator.layer({ quotas: { openai: { requestsPerMinute: 1, tokensPerMinute: 100_000 } } }),
          NodeHttpClient.layerUndici
        )
      )
    ))
})

describe("the in-process face", () => {
  it.effect("runs the engine against quotas in virtual time: the provider's 429 is retried after its retry-after", () => {
    const simulator = InProcess.make({ quotas: { openai: { requestsPerMinute: 1, tokensPerMinute: 1_000_000 } } })
    return Effect.gen(function*() {
      const engine = yield* PlotGeneration.PlotGeneration
      const request = {
        projectId: "novel",
        userPrompt: "What happens next?",
        provider: "openai" as const,
        model: "gpt-4.1"
      }
      const first = yield* engine.generate(request)
      const second = yield* Effect.fork(engine.generate(request))
      yield* TestClock.adjust("2 minutes")
      const result = yield* Fiber.join(second)
      expect(first.isTemplate).toBe(false)
      expect(result.isTemplate).toBe(false)
      expect(result.retryCount).toBe(1)
      // Asked at 0 with the one request of the minute spent: told to wait 60 s, and admitted then.
      expect(result.durationMs).toBe(60_000)
      expect(simulator.counts).toMatchObject({ requests: 3, limited: 1 })
    }).pipe(Effect.provide(
      PlotGeneration.layer().pipe(
        Layer.provide(
          Providers.layerModels({ openai: (model, parameters) => simulator.languageModel("openai", model, parameters) })
        ),
        Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
        Layer.provide(ProviderRateLimiter.layerUnlimited),
        Layer.provide(Alerts.layerDisabled)
      )
    ))
  })
})
