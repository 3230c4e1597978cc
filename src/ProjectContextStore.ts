/**
 * Where the context of a project comes from. The engine ships an in-memory store and a store of JSON files
 * (one `<projectId>.json` per project); a host backend provides its own layer over its database.
 *
 * @since 0.1.0
 */
import type * as PlatformError from "@effect/platform/Error"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Domain from "./Domain.js"
import * as Errors from "./Errors.js"
import * as Tracing from "./internal/tracing.js"

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  readonly get: (
    projectId: string
  ) => Effect.Effect<Domain.ProjectContext, Errors.ProjectNotFoundError | Errors.RequestValidationError>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class ProjectContextStore extends Context.Tag("plot-engine/ProjectContextStore")<
  ProjectContextStore,
  Service
>() {}

/**
 * A store over projects held in memory.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerMemory = (
  projects: Readonly<Record<string, Domain.ProjectContext>>
): Layer.Layer<ProjectContextStore> =>
  Layer.succeed(
    ProjectContextStore,
    ProjectContextStore.of({
      get: (projectId) =>
        Object.hasOwn(projects, projectId)
          ? Effect.succeed(projects[projectId]!)
          : Effect.fail(new Errors.ProjectNotFoundError({ projectId }))
    })
  )

/** The largest project file read, so that a runaway file cannot exhaust memory. */
const maxFileBytes = 64 * 1024 * 1024

/**
 * Reads and validates a project file: bad JSON or a bad field fails with `Errors.RequestValidationError` naming it.
 *
 * @since 0.1.0
 * @category Files
 */
export const readProjectFile = (
  file: string,
  projectId: string
): Effect.Effect<
  Domain.ProjectContext,
  Errors.ProjectNotFoundError | Errors.RequestValidationError,
  FileSystem.FileSystem
> =>
  Tracing.ifTraced(
    () => readFile(file, projectId).pipe(Effect.withSpan("ProjectContextStore.readProjectFile", spanOptions)),
    () => readFile(file, projectId)
  )

const spanOptions = { captureStackTrace: false } as const

/** `readProjectFile` without its span (made only when a tracer is installed: see `internal/tracing`). */
const readFile = Effect.fnUntraced(
  function*(file: string, projectId: string) {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(file).pipe(Effect.catchAll(notFound(projectId)))
    if (info.type !== "File") return yield* new Errors.ProjectNotFoundError({ projectId })
    if (Number(info.size) > maxFileBytes) {
      return yield* new Errors.RequestValidationError({
        field: "project",
        reason: `file is larger than ${maxFileBytes} bytes`
      })
    }
    const text = yield* fs.readFileString(file).pipe(Effect.catchAll(notFound(projectId)))
    return yield* decodeProject(text)
  }
)

/**
 * A project file that cannot be read is a project not found, for the writer; when it is there but unreadable (its
 * permissions, a disk error), the operator is told why in a warning, which the writer's message does not say.
 */
const notFound = (projectId: string) => (error: PlatformError.PlatformError) =>
  Effect.zipRight(
    error._tag === "SystemError" && error.reason === "NotFound"
      ? Effect.void
      : Effect.logWarning(`Project ${projectId} could not be read: ${error.message}`),
    Effect.fail(new Errors.ProjectNotFoundError({ projectId }))
  )

/**
 * Decodes a project from JSON text.
 *
 * @since 0.1.0
 * @category Files
 */
export const decodeProject = (text: string): Effect.Effect<Domain.ProjectContext, Errors.RequestValidationError> =>
  Schema.decodeUnknown(Schema.parseJson(Domain.ProjectContext))(text, { onExcessProperty: "ignore" }).pipe(
    Effect.mapError((error) =>
      ParseResult.isParseError(error)
        ? Errors.RequestValidationError.fromParseError(error, "project")
        : new Errors.RequestValidationError({ field: "project", reason: String(error) })
    )
  )

/**
 * A store over a directory of `<projectId>.json` files, read on every request so that edits are seen.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerDirectory = (
  directory: string
): Layer.Layer<ProjectContextStore, never, FileSystem.FileSystem | Path.Path> =>
  Layer.effect(
    ProjectContextStore,
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const get = (projectId: string) =>
        readProjectFile(path.join(directory, `${projectId}.json`), projectId).pipe(
          Effect.provideService(FileSystem.FileSystem, fs)
        )
      return ProjectContextStore.of({ get })
    })
  )

/**
 * A store holding one project file, served under the file's name without `.json` (as the CLI uses it).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerFile = (file: string): Layer.Layer<ProjectContextStore, never, FileSystem.FileSystem | Path.Path> =>
  Layer.effect(
    ProjectContextStore,
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const ownId = projectIdOfFile(path.basename(file))
      return ProjectContextStore.of({
        get: (projectId) =>
          projectId === ownId
            ? readProjectFile(file, projectId).pipe(Effect.provideService(FileSystem.FileSystem, fs))
            : Effect.fail(new Errors.ProjectNotFoundError({ projectId }))
      })
    })
  )

/**
 * The project id of a file: its name without `.json`, with characters a project id cannot hold replaced.
 *
 * @since 0.1.0
 * @category Files
 */
export const projectIdOfFile = (fileName: string): string =>
  fileName.replace(/\.json$/i, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 128) ||
  "project"
