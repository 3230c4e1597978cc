/**
 * What the benchmarks share: the sample project, the i-th variant of a request, percentiles.
 */
import * as Schema from "effect/Schema"
import { readFileSync } from "node:fs"
import { type PlotRequestInput, ProjectContext } from "../src/Domain.js"

export const sampleProject: ProjectContext = Schema.decodeUnknownSync(ProjectContext)(
  JSON.parse(readFileSync(new URL("../examples/projects/lighthouse-keeper.json", import.meta.url), "utf8"))
)

/** The `i`-th of a run of otherwise equal requests: a different prompt each, so that nothing is served twice. */
export const nthRequest = (request: PlotRequestInput, i: number): PlotRequestInput => ({
  ...request,
  userPrompt: `${request.userPrompt} (${i})`
})

/** The `p`-th percentile (0-100) of some values, 0 when there are none. */
export const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

/** The median of some values (the upper one of an even count), 0 when there are none. */
export const median = (values: ReadonlyArray<number>) => percentile(values, 50)
