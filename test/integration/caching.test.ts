/**
 * Prompt caching over HTTP, with the real clients and the simulator caching as each provider does: two generations
 * over the same project, one after the other, share the stable prefix (the tool, the system prompt, the project).
 * The second reads it from the cache, reports it, and costs less. A model whose minimum the prefix does not reach
 * caches nothing, silently, as Anthropic does.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { engineOverSimulator } from "../utils/simulated.js"

const keys = { openai: "sk-proj-caching-0123456789", anthropic: "sk-ant-api03-caching-0123456789" }

describe("prompt caching over HTTP", () => {
  for (
    const [provider, model] of [["openai", "gpt-4.1-mini"], ["anthropic", "claude-sonnet-4-5"]] as const
  ) {
    it.scopedLive(`${provider}: the second generation over a project reads its prefix from the cache, and costs less`, () =>
      Effect.gen(function*() {
        const engine = yield* engineOverSimulator(keys)
        const first = yield* engine.generate({
          projectId: "novel",
          userPrompt: "What happens at the wedding?",
          provider,
          model
        })
        const second = yield* engine.generate({
          projectId: "novel",
          userPrompt: "Who rings the Drowned Bell?",
          provider,
          model
        })
        expect(first.usage.cachedInputTokens ?? 0).toBe(0)
        if (provider === "anthropic") expect(first.usage.cacheWriteTokens).toBeGreaterThan(1_024)
        expect(second.usage.cachedInputTokens).toBeGreaterThan(1_024)
        expect(second.usage.cachedInputTokens).toBeLessThan(second.usage.inputTokens)
        expect(second.estimatedCostUsd!).toBeLessThan(first.estimatedCostUsd!)
      }).pipe(Effect.provide(GatewaySimulator.layer()), Effect.provide(NodeHttpClient.layerUndici)))
  }

  it.scopedLive("anthropic: a prefix below the model's minimum (claude-haiku-4-5: 4,096) is not cached", () =>
    Effect.gen(function*() {
      const engine = yield* engineOverSimulator(keys)
      const request = {
        projectId: "novel",
        userPrompt: "What happens next?",
        provider: "anthropic",
        model: "claude-haiku-4-5"
      } as const
      yield* engine.generate(request)
      const second = yield* engine.generate(request)
      expect([second.usage.cachedInputTokens, second.usage.cacheWriteTokens]).toEqual([undefined, undefined])
    }).pipe(Effect.provide(GatewaySimulator.layer()), Effect.provide(NodeHttpClient.layerUndici)))
})
