/**
 * The sample project of `examples/projects/`, decoded, and requests over it.
 */
import * as Schema from "effect/Schema"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { PlotRequest, ProjectContext } from "../../src/Domain.js"

export const sampleProjectFile = fileURLToPath(
  new URL("../../examples/projects/lighthouse-keeper.json", import.meta.url)
)

export const sampleProject: ProjectContext = Schema.decodeUnknownSync(ProjectContext)(
  JSON.parse(readFileSync(sampleProjectFile, "utf8"))
)

export const emptyProject = new ProjectContext({
  characters: [],
  plotThreads: [],
  locations: [],
  worldBuilding: [],
  previousContent: []
})

export const request = (fields: Partial<typeof PlotRequest.Encoded> = {}): PlotRequest =>
  Schema.decodeUnknownSync(PlotRequest)({ projectId: "lighthouse-keeper", userPrompt: "What happens next?", ...fields })
