import * as NodeContext from "@effect/platform-node/NodeContext"
import * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import { sampleProject, sampleProjectFile } from "./utils/fixtures.js"
import { temporaryDirectory } from "./utils/temporaryDirectory.js"

const get = (projectId: string) =>
  Effect.flatMap(ProjectContextStore.ProjectContextStore, (store) => store.get(projectId))

const directory = () => {
  const dir = temporaryDirectory("plot-engine-")
  writeFileSync(path.join(dir, "broken.json"), "{ not json")
  writeFileSync(
    path.join(dir, "nameless.json"),
    JSON.stringify({ ...JSON.parse(JSON.stringify(sampleProject)), characters: [{ role: "hero" }] })
  )
  return dir
}

describe("ProjectContextStore", () => {
  it.effect("serves projects held in memory", () =>
    Effect.gen(function*() {
      expect((yield* get("novel")).characters).toHaveLength(6)
      expect((yield* Effect.flip(get("other")))._tag).toBe("ProjectNotFoundError")
    }).pipe(Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject }))))

  it.effect("reads the example project file under its file name", () =>
    Effect.gen(function*() {
      const project = yield* get("lighthouse-keeper")
      expect(project.characters.length).toBeGreaterThanOrEqual(5)
      expect(project.previousContent.length).toBeGreaterThanOrEqual(3)
      expect((yield* Effect.flip(get("other")))._tag).toBe("ProjectNotFoundError")
    }).pipe(Effect.provide(ProjectContextStore.layerFile(sampleProjectFile)), Effect.provide(NodeContext.layer)))

  it.effect("names the bad field of a project file, and the file when it is not JSON", () => {
    const dir = directory()
    return Effect.gen(function*() {
      const nameless = yield* Effect.flip(get("nameless"))
      expect(nameless._tag === "RequestValidationError" && nameless.field).toBe("project.characters[0].name")
      const broken = yield* Effect.flip(get("broken"))
      expect(broken._tag === "RequestValidationError" && broken.field).toBe("project")
      expect((yield* Effect.flip(get("absent")))._tag).toBe("ProjectNotFoundError")
    }).pipe(Effect.provide(ProjectContextStore.layerDirectory(dir)), Effect.provide(NodeContext.layer))
  })

  it.effect("a project file it cannot read is not found for the writer, and a warning tells the operator why", () => {
    const lines: Array<string> = []
    const unreadable = FileSystem.layerNoop({
      stat: (file) =>
        Effect.fail(
          new PlatformError.SystemError({
            reason: "PermissionDenied",
            module: "FileSystem",
            method: "stat",
            pathOrDescriptor: file,
            description: "permission denied"
          })
        )
    })
    return Effect.gen(function*() {
      expect((yield* Effect.flip(get("locked")))._tag).toBe("ProjectNotFoundError")
      // Before, nothing said the file was there but unreadable.
      expect(lines).toEqual([expect.stringMatching(/^WARN Project locked could not be read: .*PermissionDenied/)])
    }).pipe(
      Effect.provide(ProjectContextStore.layerDirectory("/projects")),
      Effect.provide(unreadable),
      Effect.provide(Path.layer),
      Effect.provide(Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ logLevel, message }) => lines.push(`${logLevel.label} ${String(message)}`))
      ))
    )
  })

  it("derives a project id from a file name", () => {
    expect(ProjectContextStore.projectIdOfFile("lighthouse-keeper.json")).toBe("lighthouse-keeper")
    expect(ProjectContextStore.projectIdOfFile("My Novel (draft).json")).toBe("My-Novel-draft-")
    expect(ProjectContextStore.projectIdOfFile("...json")).toBe("project")
  })
})
