/**
 * The sample project, for benchmarks.
 */
import * as Schema from "effect/Schema"
import { readFileSync } from "node:fs"
import { ProjectContext } from "../src/Domain.js"

export const sampleProject: ProjectContext = Schema.decodeUnknownSync(ProjectContext)(
  JSON.parse(readFileSync(new URL("../examples/projects/lighthouse-keeper.json", import.meta.url), "utf8"))
)
