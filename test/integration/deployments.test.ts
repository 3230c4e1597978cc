/**
 * Several deployments over HTTP, with the real clients: the simulator accepts a key per deployment, each with its own
 * quota and faults. A deployment that answers 429 to everything hands every call to the other at once, and the
 * limiter keeps a budget per deployment.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Alerts from "../../src/Alerts.js"
import type * as Deployments from "../../src/Deployments.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { sampleProject } from "../utils/fixtures.js"

const keys = { busy: "sk-proj-busy-org-0123456789", spare: "sk-proj-spare-org-0123456789" }

describe("deployments over HTTP", () => {
  it.scopedLive("a deployment answering 429 to everything: every call moves to the other at once", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const deployment = (id: keyof typeof keys): Deployments.Deployment => ({
        id,
        dialect: "openai-responses",
        baseUrl: simulator.openaiBaseUrl,
        apiKey: Redacted.make(keys[id]),
        headers: {},
        models: [{ model: "gpt-4.1" }],
        weight: id === "busy" ? 1 : 0
      })
      const limiter = yield* ProviderRateLimiter.makeMemory()
      const engine = yield* PlotGeneration.make().pipe(
        Effect.provide(Providers.layer({ deployments: [deployment("busy"), deployment("spare")] })),
        Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
        Effect.provide(Layer.succeed(ProviderRateLimiter.ProviderRateLimiter, limiter)),
        Effect.provide(Alerts.layerDisabled)
      )
      const results = yield* Effect.forEach([1, 2, 3], (i) =>
        engine.generate({
          projectId: "novel",
          userPrompt: `What happens in chapter ${i}?`,
          provider: "openai",
          model: "gpt-4.1"
        }))
      // The busy deployment's 429 (asking for a minute) moved the first generation to the spare at once; the next two
      // went straight to the spare, which holds the project's prompt cache now.
      for (const result of results) {
        expect([result.isTemplate, result.model]).toEqual([false, "gpt-4.1"])
        expect(result.durationMs).toBeLessThan(5_000)
      }
      const stats = yield* simulator.stats
      expect(stats.byStatus["429"]).toBe(1)
      expect(stats.byStatus["200"]).toBe(3)
      const snapshot = yield* limiter.snapshot
      expect(snapshot.map((key) => key.key).sort()).toEqual(["busy/gpt-4.1", "spare/gpt-4.1"])
      expect(snapshot.find((key) => key.key === "busy/gpt-4.1")!.pausedUntil).toBeGreaterThan(Date.now() + 50_000)
    }).pipe(
      Effect.withRandom(Random.make(1)),
      Logger.withMinimumLogLevel(LogLevel.Warning),
      Effect.provide(GatewaySimulator.layer({
        apiKeys: { openai: [keys.busy, keys.spare] },
        faults: { ratesByKey: { [keys.busy]: { rate_limit: 1 } }, rateLimitRetryAfterMs: 60_000 }
      })),
      Effect.provide(NodeHttpClient.layerUndici)
    ))
})
