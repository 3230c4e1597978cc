/**
 * The rate limiter hears the rate-limit headers of every response the real clients receive, for the provider and
 * the model of the call: with one budget per model, the model's key learns the provider's limit and what it has
 * left, and no other key is touched.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { engineOverSimulator } from "../utils/simulated.js"

const key = "sk-headers-0123456789"

describe("response headers reach the rate limiter", () => {
  it.scopedLive("per model: the key of the model called learns the provider's limit and what is left", () =>
    Effect.gen(function*() {
      const limiterContext = yield* Layer.build(ProviderRateLimiter.layerMemory({
        keyBy: "model",
        quotas: { openai: { requestsPerMinute: 600, tokensPerMinute: 10_000_000, maxConcurrent: 5 } }
      }))
      const limiter = Context.get(limiterContext, ProviderRateLimiter.ProviderRateLimiter)
      const engine = yield* engineOverSimulator(
        { openai: key },
        {},
        Layer.succeed(ProviderRateLimiter.ProviderRateLimiter, limiter)
      )
      const result = yield* engine.generate({
        projectId: "novel",
        userPrompt: "What happens at the Drowned Bell?",
        provider: "openai",
        model: "gpt-4.1",
        targetWordCount: 200
      })
      expect(result.isTemplate).toBe(false)

      const keys = yield* limiter.snapshot
      expect(keys.map((snapshot) => snapshot.key)).toEqual(["openai/gpt-4.1"])
      const [model] = keys
      // The simulator allows 10 requests a minute to this key and model, and reported 9 left after the call: the
      // configured 600 came down to the provider's 10, and the local bucket to what the provider has left.
      expect(model!.quota.requestsPerMinute).toBe(10)
      expect(model!.available.rpm).toBeLessThanOrEqual(9)
    }).pipe(
      Effect.provide(Layer.merge(
        GatewaySimulator.layer({
          apiKeys: { openai: key },
          quotas: { openai: { requestsPerMinute: 10, tokensPerMinute: 1_000_000 } }
        }),
        NodeHttpClient.layerUndici
      ))
    ))
})
