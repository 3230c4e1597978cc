/**
 * The engine over the gateway simulator in context, as the integration tests build it, and metric totals.
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as Redacted from "effect/Redacted"
import * as Alerts from "../../src/Alerts.js"
import type { ProviderName } from "../../src/Domain.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { sampleProject } from "./fixtures.js"

/**
 * An engine over the real clients of the providers given keys, pointed at the simulator, serving the sample
 * project as `novel`, behind `limiter` (default none) and without alerts.
 */
export const engineOverSimulator = (
  keys: Partial<Record<ProviderName, string>>,
  options: PlotGeneration.Options = {},
  limiter: Layer.Layer<ProviderRateLimiter.ProviderRateLimiter> = ProviderRateLimiter.layerUnlimited
) =>
  Effect.gen(function*() {
    const simulator = yield* GatewaySimulator.GatewaySimulator
    const baseUrls = { openai: simulator.openaiBaseUrl, anthropic: simulator.anthropicBaseUrl }
    const providers = yield* Providers.make(Object.fromEntries(
      (Object.entries(keys) as Array<[ProviderName, string]>).map(([provider, key]) => [
        provider,
        { apiKey: Redacted.make(key), baseUrl: baseUrls[provider] }
      ])
    ))
    return yield* PlotGeneration.make(options).pipe(
      Effect.provideService(Providers.Providers, providers),
      Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
      Effect.provide(limiter),
      Effect.provide(Alerts.layerDisabled)
    )
  })

/** The sum of a counter over every tag set that has all of `tags`. */
export const counterTotal = (name: string, tags: Readonly<Record<string, string>> = {}) =>
  Effect.map(Metric.snapshot, (pairs) =>
    pairs.reduce(
      (sum, pair) =>
        pair.metricKey.name === name &&
          Object.entries(tags).every(([key, value]) =>
            pair.metricKey.tags.some((tag) => tag.key === key && tag.value === value)
          ) &&
          MetricState.isCounterState(pair.metricState)
          ? sum + Number(pair.metricState.count)
          : sum,
      0
    ))
