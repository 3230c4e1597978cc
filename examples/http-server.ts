/**
 * Embedding plot-engine in an Effect HTTP backend: an `HttpApi` that provides the `PlotGeneration` layer and
 * serves the projects of `examples/projects/` (each by its file name without `.json` as `projectId`).
 *
 *   POST /plots          JSON in (a PlotRequest), a PlotResult out; typed errors as HTTP statuses
 *   POST /plots/stream   the GenerationEvents as server-sent events, ending with `completed`
 *
 * Run it with `npm run example:server` (port from `PORT`, default 3000). With no provider configured it uses
 * the embedded gateway simulator, like the CLI.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import { fileURLToPath } from "node:url"
import * as Domain from "../src/Domain.js"
import * as Errors from "../src/Errors.js"
import * as PlotEngine from "../src/PlotEngine.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"

// =============================================================================
// The API
// =============================================================================

/** Every typed failure, with the HTTP status a client should see. */
const generate = HttpApiEndpoint.post("generate", "/plots")
  .setPayload(Domain.PlotRequest)
  .addSuccess(Domain.PlotResult)
  .addError(Errors.RequestValidationError, { status: 400 })
  .addError(Errors.InvalidRequestError, { status: 400 })
  .addError(Errors.ProjectNotFoundError, { status: 404 })
  .addError(Errors.ContextTooLongError, { status: 413 })
  .addError(Errors.RateLimitError, { status: 429 })
  .addError(Errors.QuotaExhaustedError, { status: 429 })
  .addError(Errors.AuthError, { status: 502 })
  .addError(Errors.ServerError, { status: 502 })
  .addError(Errors.NetworkError, { status: 502 })
  .addError(Errors.ResponseParseError, { status: 502 })
  .addError(Errors.IncompleteResponseError, { status: 502 })
  // The provider does not serve the model: the deployment's catalog is wrong, not the writer's request.
  .addError(Errors.ModelNotFoundError, { status: 502 })
  .addError(Errors.ProviderNotConfiguredError, { status: 503 })
  .addError(Errors.TimeoutError, { status: 504 })

const stream = HttpApiEndpoint.post("stream", "/plots/stream")
  .setPayload(Domain.PlotRequest)
  .addSuccess(HttpApiSchema.withEncoding(Schema.String, { kind: "Text", contentType: "text/event-stream" }))

/**
 * The API: one group, two endpoints.
 */
export class PlotsApi extends HttpApi.make("plot-engine").add(HttpApiGroup.make("plots").add(generate).add(stream)) {}

const encodeEvent = Schema.encodeSync(Domain.GenerationEvent)

const PlotsLive = HttpApiBuilder.group(PlotsApi, "plots", (handlers) =>
  Effect.gen(function*() {
    const engine = yield* PlotGeneration.PlotGeneration
    return handlers
      .handle("generate", ({ payload }) => engine.generate(Schema.encodeSync(Domain.PlotRequest)(payload)))
      .handleRaw("stream", ({ request }) =>
        Effect.map(Effect.orElseSucceed(request.json, () => ({})), (body) =>
          HttpServerResponse.stream(
            // The engine validates the body itself: a bad field ends the stream with an error event naming it.
            engine.generateStream(body as Domain.PlotRequestInput).pipe(
              Stream.map((event) =>
                `event: ${event._tag === "Completed" ? "completed" : event._tag}\ndata: ${
                  JSON.stringify(encodeEvent(event))
                }\n\n`
              ),
              // A typed failure ends the stream with an `error` event that says what to do.
              Stream.catchAll((error) =>
                Stream.make(
                  `event: error\ndata: ${
                    JSON.stringify({ type: Errors.errorType(error), message: Errors.userMessage(error) })
                  }\n\n`
                )
              ),
              Stream.encodeText
            ),
            { contentType: "text/event-stream", headers: { "cache-control": "no-cache" } }
          )))
  }))

// =============================================================================
// The server
// =============================================================================

const projectsDirectory = fileURLToPath(new URL("./projects/", import.meta.url))

/**
 * The backend on a port: the API, the engine and what it needs. A scoped layer: it serves while it lives.
 */
export const ServerLive = (port: number) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const gateway = yield* PlotEngine.resolveGateway((line) => Effect.log(line))
    return HttpApiBuilder.serve().pipe(
      Layer.provide(HttpApiBuilder.api(PlotsApi).pipe(Layer.provide(PlotsLive))),
      Layer.provide(PlotEngine.layer({ gateway, store: ProjectContextStore.layerDirectory(projectsDirectory) })),
      Layer.provide(NodeContext.layer),
      HttpServer.withLogAddress,
      // Merged, so that whoever builds this layer can read the address (tests listen on port 0).
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" }))
    )
  }))

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  Effect.flatMap(Config.integer("PORT").pipe(Config.withDefault(3000)), (port) => Layer.launch(ServerLive(port))).pipe(
    NodeRuntime.runMain
  )
}
