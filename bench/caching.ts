/**
 * Benchmark `caching`: 200 generations over 5 projects on the simulator's in-process face in virtual time, with
 * the providers' prompt caches on and off. `inputCostRatio` is what the input of every generation cost with the
 * caches over without (goal at most 0.5); `anthropicThroughputRatio` is the generations a minute under an
 * Anthropic quota bound by input tokens per minute, cached over uncached (goal at least 1.5: Anthropic does not
 * count cache reads against that quota, and the limiter gives back what a call read from the cache).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Alerts from "../src/Alerts.js"
import { ProjectContext } from "../src/Domain.js"
import type * as Domain from "../src/Domain.js"
import * as ModelCatalog from "../src/ModelCatalog.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import * as InProcess from "../src/simulator/InProcess.js"
import { nthRequest, sampleProject } from "./fixtures.js"
import { runInVirtualTime } from "./virtual-time.js"

const generations = 200
const projectCount = 5
/** Every call takes this long at the provider. */
const latencyMs = 2_000

/** Five projects: the sample novel under five titles, so that each has a prefix of its own. */
const projects: Record<string, ProjectContext> = Object.fromEntries(
  Array.from({ length: projectCount }, (_, i) => [
    `novel-${i + 1}`,
    new ProjectContext({ ...sampleProject, title: `${sampleProject.title ?? "Novel"}, volume ${i + 1}` })
  ])
)

/** Plenty of time: the point is throughput, not load shedding. */
const patientPolicy: RetryPolicy.Policy = { ...RetryPolicy.defaults, deadline: "3 hours", attemptTimeout: "10 minutes" }

interface Scenario {
  readonly provider: Domain.ProviderName
  readonly model: string
  readonly quota: ProviderRateLimiter.Quota
}

const scenarios: ReadonlyArray<Scenario> = [
  {
    provider: "openai",
    model: "gpt-4.1",
    quota: { requestsPerMinute: 10_000, tokensPerMinute: 100_000_000, maxConcurrent: 5 }
  },
  {
    provider: "anthropic",
    model: "claude-sonnet-4-5",
    // Bound by input tokens per minute.
    quota: {
      requestsPerMinute: 10_000,
      inputTokensPerMinute: 40_000,
      outputTokensPerMinute: 10_000_000,
      maxConcurrent: 5
    }
  }
]

/** What a result's input cost: uncached input, cache reads and cache writes, each at its price. */
const inputCost = (model: ModelCatalog.ModelInfo, usage: Domain.Usage) =>
  ModelCatalog.cost(model, usage)! - ModelCatalog.cost(model, { inputTokens: 0, outputTokens: usage.outputTokens })!

const runScenario = (scenario: Scenario, cached: boolean) => {
  const model = Option.getOrThrow(ModelCatalog.find(ModelCatalog.defaultCatalog, scenario.provider, scenario.model))
  const simulator = InProcess.make({
    promptCache: cached,
    faults: { latencyMs },
    quotas: scenario.provider === "openai"
      ? {
        openai: {
          requestsPerMinute: scenario.quota.requestsPerMinute,
          tokensPerMinute: scenario.quota.tokensPerMinute!
        }
      }
      : {
        anthropic: {
          requestsPerMinute: scenario.quota.requestsPerMinute,
          inputTokensPerMinute: scenario.quota.inputTokensPerMinute!,
          outputTokensPerMinute: scenario.quota.outputTokensPerMinute!
        }
      }
  })
  const engine = PlotGeneration.layer({ retryPolicy: patientPolicy }).pipe(
    Layer.provide(Providers.layerModels({
      [scenario.provider]: (id: string, parameters: Providers.ModelParameters) =>
        simulator.languageModel(scenario.provider, id, parameters)
    })),
    Layer.provide(ProjectContextStore.layerMemory(projects)),
    Layer.provide(
      ProviderRateLimiter.layerMemory({ quotas: { [scenario.provider]: scenario.quota }, queueTimeout: "3 hours" })
    ),
    Layer.provide(Alerts.layerDisabled)
  )
  const { millis, value } = runInVirtualTime(
    Effect.forEach(
      Array.from({ length: generations }, (_, i) => i),
      (i) =>
        PlotGeneration.generate(nthRequest({
          projectId: `novel-${(i % projectCount) + 1}`,
          userPrompt: "What happens next?",
          provider: scenario.provider,
          model: scenario.model
        }, i)),
      { concurrency: "unbounded" }
    ).pipe(Effect.provide(engine), Logger.withMinimumLogLevel(LogLevel.Warning))
  )
  const templates = value.filter((result) => result.isTemplate).length
  return {
    provider: scenario.provider,
    model: scenario.model,
    caches: cached ? "on" : "off",
    templates,
    inputTokens: value.reduce((sum, r) => sum + r.usage.inputTokens, 0),
    cachedInputTokens: value.reduce((sum, r) => sum + (r.usage.cachedInputTokens ?? 0), 0),
    cacheWriteTokens: value.reduce((sum, r) => sum + (r.usage.cacheWriteTokens ?? 0), 0),
    inputCostUsd: Number(value.reduce((sum, r) => sum + inputCost(model, r.usage), 0).toFixed(6)),
    minutes: Number((millis / 60_000).toFixed(2)),
    generationsPerMinute: Number((generations / (millis / 60_000)).toFixed(2))
  }
}

export const run = () => {
  const rows = scenarios.flatMap((scenario) => [runScenario(scenario, false), runScenario(scenario, true)])
  const find = (provider: string, caches: string) => rows.find((r) => r.provider === provider && r.caches === caches)!
  const ratio = (a: number, b: number) => Number((a / b).toFixed(3))
  const inputCostOn = rows.filter((r) => r.caches === "on").reduce((sum, r) => sum + r.inputCostUsd, 0)
  const inputCostOff = rows.filter((r) => r.caches === "off").reduce((sum, r) => sum + r.inputCostUsd, 0)
  return {
    generations,
    projects: projectCount,
    inputCostRatio: ratio(inputCostOn, inputCostOff),
    inputCostRatioByProvider: {
      openai: ratio(find("openai", "on").inputCostUsd, find("openai", "off").inputCostUsd),
      anthropic: ratio(find("anthropic", "on").inputCostUsd, find("anthropic", "off").inputCostUsd)
    },
    anthropicThroughputRatio: ratio(
      find("anthropic", "on").generationsPerMinute,
      find("anthropic", "off").generationsPerMinute
    ),
    goals: { inputCostRatio: "at most 0.5", anthropicThroughputRatio: "at least 1.5" },
    rows
  }
}
