/**
 * Reasoning models over HTTP, with the real OpenAI client against the simulator, whose gpt-5 reasons as the real
 * one does: hidden tokens spent out of `max_output_tokens` before it writes, more at a higher effort, and an
 * `incomplete` answer with nothing in it when reasoning uses the whole limit.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { engineOverSimulator } from "../utils/simulated.js"

const key = "sk-reasoning-0123456789"

/** A 2,500-word outline for OpenAI: premium, so gpt-5. */
const request = {
  projectId: "novel",
  userPrompt: "Outline the whole second part of the novel.",
  targetWordCount: 2_500,
  provider: "openai" as const
}

const live = (
  name: string,
  body: () => Effect.Effect<void, unknown, GatewaySimulator.GatewaySimulator | HttpClient.HttpClient | Scope.Scope>
) =>
  it.scopedLive(
    name,
    () =>
      Effect.provide(
        body(),
        Layer.merge(GatewaySimulator.layer({ apiKeys: { openai: key } }), NodeHttpClient.layerUndici)
      )
  )

describe("reasoning models", () => {
  live(
    "gpt-5 writes the outline at once: its effort sent, room left to reason, its reasoning in the usage",
    () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const engine = yield* engineOverSimulator({ openai: key })
        const result = yield* engine.generate(request)
        expect([result.provider, result.model, result.isTemplate]).toEqual(["openai", "gpt-5", false])
        expect((yield* simulator.stats).requests).toBe(1)
        // Medium effort: 4,096 tokens of thought, and one for each of the 2,500 words asked for.
        expect(result.usage.reasoningTokens).toBe(6_596)
        expect(result.usage.outputTokens).toBeGreaterThan(6_596)
      })
  )

  live(
    "an answer that reasoning used up is retried once on gpt-5, differently, and gpt-5 writes the outline",
    () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        // A gpt-5 whose output limit (6,000) is less than its medium-effort reasoning (6,596): the first answer is
        // incomplete and empty; the limit cannot grow, so the retry asks for less reasoning.
        const catalog = ModelCatalog.merge(ModelCatalog.defaultCatalog, [
          new ModelCatalog.ModelInfo({
            ...ModelCatalog.defaultCatalog.find((m) => m.id === "gpt-5")!,
            maxOutputTokens: 6_000
          })
        ])
        const engine = yield* engineOverSimulator({ openai: key }, { catalog })
        const events = [...yield* Stream.runCollect(engine.generateStream(request))]
        const last = events.at(-1)!
        const result = last._tag === "Completed" ? last.result : undefined
        expect([result?.model, result?.isTemplate]).toEqual(["gpt-5", false])
        expect((yield* simulator.stats).requests).toBe(2)
        expect(result?.retryCount).toBe(1)
        expect(events.filter((e) => e._tag === "Retrying")).toMatchObject([
          { _tag: "Retrying", model: "gpt-5", errorType: "incomplete_response", delayMs: 0 }
        ])
        // The retry reasoned at the lower effort: 1,024 + 2,500.
        expect(result?.usage.reasoningTokens).toBe(3_524)
      })
  )
})

describe("a 429 on gpt-5 asking for two minutes, over HTTP, behind the rate limiter", () => {
  live("the next model answers within 3 seconds", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      yield* simulator.script(key, [{ kind: "rate_limit", retryAfterMs: 120_000 }, "ok"])
      const engine = yield* engineOverSimulator({ openai: key }, {}, ProviderRateLimiter.layerMemory())
      const started = Date.now()
      const result = yield* engine.generate(request)
      expect(Date.now() - started).toBeLessThan(3_000)
      expect([result.model, result.isTemplate]).toEqual(["gpt-4.1", false])
      expect((yield* simulator.stats).requests).toBe(2)
    }))
})
