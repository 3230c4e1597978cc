/**
 * The engine over fake models, as unit tests build it: the sample project as `novel` (or the projects given), no
 * rate limit unless one is given, no alerts. Optional collaborators (analytics, a spend ledger) are provided by
 * the caller on top (`Layer.provide`).
 */
import * as Layer from "effect/Layer"
import * as Alerts from "../../src/Alerts.js"
import type { ProjectContext, ProviderName } from "../../src/Domain.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import type * as InProcess from "../../src/simulator/InProcess.js"
import { sampleProject } from "./fixtures.js"

export const fakeEngine = (
  models: Partial<Record<ProviderName, Providers.ModelFactory>>,
  { limiter = ProviderRateLimiter.layerUnlimited, options = {}, projects = { novel: sampleProject } }: {
    readonly limiter?: Layer.Layer<ProviderRateLimiter.ProviderRateLimiter>
    readonly options?: PlotGeneration.Options
    readonly projects?: Readonly<Record<string, ProjectContext>>
  } = {}
) =>
  PlotGeneration.layer(options).pipe(
    Layer.provide(Providers.layerModels(models)),
    Layer.provide(ProjectContextStore.layerMemory(projects)),
    Layer.provide(limiter),
    Layer.provide(Alerts.layerDisabled)
  )

/** Both providers' models from the simulator's in-process face. */
export const simulatorModels = (
  simulator: InProcess.InProcessSimulator
): Record<ProviderName, Providers.ModelFactory> => ({
  openai: (model, parameters) => simulator.languageModel("openai", model, parameters),
  anthropic: (model, parameters) => simulator.languageModel("anthropic", model, parameters)
})
