/**
 * Embedding plot-engine in an Effect HTTP backend: an `HttpApi` that provides the `PlotGeneration` layer and
 * serves the projects of `examples/projects/` (each by its file name without `.json` as `projectId`).
 *
 *   POST /plots          a PlotRequest as JSON in, a PlotResult out
 *   POST /plots/stream   the same generation as server-sent events, the last one `completed` (or `error`)
 *   GET  /health         the providers configured and the rate limiter's state (never a key)
 *   GET  /metrics        the engine's metrics (`plot_engine_*`) in Prometheus' text format
 *   GET  /openapi.json   the OpenAPI document; GET /docs shows it in Swagger UI (bundled, no CDN)
 *
 * Bodies: `Content-Type: application/json` (else 415), at most `maxBodyBytes` (default 1 MiB, else 413), JSON
 * nested at most 32 deep (a PlotRequest is flat). The engine checks the request itself, on both endpoints alike:
 * a missing, bad or unknown field is a 400 that names it.
 *
 * Every answer that is not a 2xx has one shape, `{"error":{"type","message","field"?}}`: `type` is
 * `Errors.errorType` for the engine's errors (`validation_error`, `not_found`, `rate_limit`...) or one of this
 * server's (`malformed_json`, `json_too_deep`, `unsupported_media_type`, `payload_too_large`, `incomplete_body`,
 * `malformed_request`, `request_timeout`, `not_found_route`, `expectation_failed`, `too_many_requests`,
 * `shutting_down`, `internal`); `message` is a sentence for people; `field` names the bad field of a 400.
 * A 429 carries `Retry-After` (seconds) when the wait is known, as does a 503 `shutting_down`.
 *
 * The stream answers with an HTTP status until the engine has checked the request, read the project and chosen a
 * model; those events are held until then. After that it is a 200, and a failure is an `error` event whose data
 * is the same envelope. Event names are the events' `_tag` in snake case: `progress`, `model_selected`,
 * `text_delta`, ..., `completed`, and `error`.
 *
 * The envelope and the statuses are in `http-server/HttpErrors.ts`, the reading of bodies in `http-server/JsonBody.ts`.
 *
 * Run it with `npm run example:server` (port from `PORT`, default 3000; body limit from `MAX_BODY_BYTES`; one client
 * address's generations at once from `MAX_REQUESTS_PER_CLIENT`, `http-server/ClientShare.ts`). With
 * no provider configured it uses the embedded gateway simulator, like the CLI. On SIGTERM or Ctrl-C it takes no new
 * connection, gives the requests in flight `SHUTDOWN_GRACE` (default 25 seconds) to end, then answers those still
 * running 503 `shutting_down` (a stream: its `error` event), and cuts what is left a second later
 * (`http-server/Shutdown.ts`).
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpServer from "@effect/platform/HttpServer"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Config from "effect/Config"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { fileURLToPath } from "node:url"
import * as Domain from "../src/Domain.js"
import type * as Errors from "../src/Errors.js"
import * as ConfigValues from "../src/internal/configValues.js"
import * as PlotEngine from "../src/PlotEngine.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as Prometheus from "../src/Telemetry/Prometheus.js"
import * as ClientShare from "./http-server/ClientShare.js"
import * as HttpErrors from "./http-server/HttpErrors.js"
import * as JsonBody from "./http-server/JsonBody.js"
import * as NodeServer from "./http-server/NodeServer.js"
import * as Shutdown from "./http-server/Shutdown.js"

// =============================================================================
// Request bodies
// =============================================================================

/**
 * A request's JSON body, not yet checked: the engine decodes it itself, so that both endpoints apply its rules
 * (unknown fields refused, each bad field named).
 */
const readRequest = (request: HttpServerRequest.HttpServerRequest, maxBytes: number) =>
  // The cast is the engine's contract: it takes the wire form and validates every field before anything else.
  JsonBody.read(request, maxBytes) as Effect.Effect<Domain.PlotRequestInput, HttpErrors.HttpError>

// =============================================================================
// Server-sent events
// =============================================================================

const encodeEvent = Schema.encodeSync(Domain.GenerationEvent)

/** `ModelSelected` -> `model_selected`: every event name lower case, like `error`. */
const eventName = (tag: string) =>
  tag.replace(/[A-Z]/g, (letter, index) => `${index === 0 ? "" : "_"}${letter.toLowerCase()}`)

const serverSentEvent = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`

/** The preparation's progress: until it is over, a failure is still an HTTP status. */
const preparationStages: ReadonlySet<Domain.Stage> = new Set([
  "retrieving_context",
  "selecting_model",
  "building_prompt"
])

const isPreparation = (event: Domain.GenerationEvent) => event._tag === "Progress" && preparationStages.has(event.stage)

/**
 * Pulls a generation's events until its preparation is over (request decoded, project read, model chosen): the
 * events pulled so far, and the rest to stream. A failure until then fails this effect, to be answered with its
 * status before the first byte.
 */
const pullPreparation = Effect.fnUntraced(function*(
  pull: Effect.Effect<Chunk.Chunk<Domain.GenerationEvent>, Option.Option<Errors.GenerationError>>
) {
  const held: Array<Domain.GenerationEvent> = []
  while (held.every(isPreparation)) {
    const chunk = yield* Effect.catchAll(
      pull,
      Option.match({ onNone: () => Effect.succeed(undefined), onSome: Effect.fail })
    )
    if (chunk === undefined) return Stream.fromIterable(held)
    held.push(...chunk)
  }
  return Stream.concat(Stream.fromIterable(held), Stream.repeatEffectChunkOption(pull))
})

/**
 * The events as `text/event-stream`; a failure once streaming is the last event, `error`, with the envelope (a
 * stream still running when the shutdown's grace ends: `shutting_down`).
 */
const eventStreamResponse = (
  events: Stream.Stream<Domain.GenerationEvent, Errors.GenerationError>,
  graceOver: Effect.Effect<void>
) =>
  HttpServerResponse.stream(
    events.pipe(
      Stream.interruptWhen(failWhenGraceOver(graceOver)),
      Stream.map((event) => serverSentEvent(eventName(event._tag), encodeEvent(event))),
      Stream.catchAllCause((cause) =>
        Stream.fromEffect(
          Effect.map(HttpErrors.clientErrorOf(cause), (error) =>
            serverSentEvent("error", HttpErrors.errorEnvelope(error)))
        )
      ),
      Stream.encodeText
    ),
    { contentType: "text/event-stream", headers: { "cache-control": "no-cache" } }
  )

// =============================================================================
// The API
// =============================================================================

const generate = HttpApiEndpoint.post("generate", "/plots")
  .setPayload(Domain.PlotRequest)
  .addSuccess(Domain.PlotResult)

const stream = HttpApiEndpoint.post("stream", "/plots/stream")
  .setPayload(Domain.PlotRequest)
  .addSuccess(
    HttpApiSchema.withEncoding(
      Schema.String.annotations({
        description: "Server-sent events named progress, model_selected, text_delta, ..., then completed or error"
      }),
      { kind: "Text", contentType: "text/event-stream" }
    )
  )

const documentedError = (status: keyof typeof HttpErrors.statusDescriptions) =>
  [HttpErrors.ErrorEnvelope.annotations({ description: HttpErrors.statusDescriptions[status] }), { status }] as const

/** Both plot endpoints fail the same ways, always with the envelope. */
class PlotsGroup extends HttpApiGroup.make("plots")
  .add(generate)
  .add(stream)
  .addError(...documentedError(400))
  .addError(...documentedError(404))
  .addError(...documentedError(413))
  .addError(...documentedError(415))
  .addError(...documentedError(422))
  .addError(...documentedError(429))
  .addError(...documentedError(500))
  .addError(...documentedError(502))
  .addError(...documentedError(503))
  .addError(...documentedError(504))
{}

/**
 * What `/health` says: the gateway in use, the providers configured, and each rate-limit key's state (keys are
 * `provider/model` buckets, never API keys).
 */
export const Health = Schema.Struct({
  status: Schema.Literal("ok"),
  gateway: Schema.Literal("providers", "simulator"),
  providers: Schema.Array(Domain.ProviderName),
  limiter: Schema.Array(Schema.Struct({
    key: Schema.String,
    queued: Schema.Int,
    inFlight: Schema.Int,
    permitsFree: Schema.Int,
    /** Until when a provider's 429 closed the key, as an ISO time; `null` when open. */
    pausedUntil: Schema.NullOr(Schema.String)
  }))
}).annotations({ identifier: "Health" })

class SystemGroup extends HttpApiGroup.make("system")
  .add(HttpApiEndpoint.get("health", "/health").addSuccess(Health))
  .add(
    HttpApiEndpoint.get("metrics", "/metrics").addSuccess(
      HttpApiSchema.withEncoding(
        Schema.String.annotations({ description: "The engine's metrics (plot_engine_*) in Prometheus' text format" }),
        { kind: "Text", contentType: Prometheus.contentType }
      )
    )
  )
{}

const decodeErrorRef = "#/components/schemas/HttpApiDecodeError"

/**
 * The document without `HttpApiDecodeError`, the 400 every HttpApi declares: this server never sends it, since its
 * handlers read the body themselves and answer with the envelope.
 */
const withoutDecodeError = (spec: Record<string, any>) => {
  for (const operations of Object.values<Record<string, any>>(spec.paths)) {
    for (const operation of Object.values<Record<string, any>>(operations)) {
      const content = operation.responses?.["400"]?.content?.["application/json"]
      if (content === undefined) continue
      const others = (content.schema.anyOf ?? [content.schema]).filter((s: any) => s.$ref !== decodeErrorRef)
      if (others.length === 0) {
        delete operation.responses["400"]
      } else {
        content.schema = others.length === 1 ? others[0] : { anyOf: others }
        operation.responses["400"].description = HttpErrors.statusDescriptions[400]
      }
    }
  }
  delete spec.components.schemas.HttpApiDecodeError
  delete spec.components.schemas.Issue
  delete spec.components.schemas.PropertyKey
  return spec
}

/**
 * The API: plots and health.
 */
export class PlotsApi extends HttpApi.make("plot-engine")
  .add(PlotsGroup)
  .add(SystemGroup)
  .annotate(OpenApi.Title, "plot-engine example server")
  .annotate(
    OpenApi.Description,
    "Plot content for novels. Every non-2xx answer is {\"error\":{\"type\",\"message\",\"field\"?}}."
  )
  .annotate(OpenApi.Transform, withoutDecodeError)
{}

// =============================================================================
// Handlers
// =============================================================================

/** Fails with `shutting_down` once the shutdown's grace is over (see `Shutdown.GraceOver`). */
const failWhenGraceOver = (graceOver: Effect.Effect<void>) =>
  Effect.zipRight(graceOver, Effect.fail(HttpErrors.HttpError.shuttingDown()))

/**
 * A generation's request: within its client's share (`too_many_requests` past it), and answered `shutting_down` if
 * the shutdown's grace ends before it has (a body still coming included).
 */
const underWay = <A, E, R>(
  share: ClientShare.ClientShare,
  graceOver: Effect.Effect<void>,
  request: HttpServerRequest.HttpServerRequest,
  work: Effect.Effect<A, E, R>
) => Effect.zipRight(share.enter(request), Effect.raceFirst(work, failWhenGraceOver(graceOver)))

const PlotsLive = (maxBodyBytes: number, maxRequestsPerClient: number) =>
  HttpApiBuilder.group(PlotsApi, "plots", (handlers) =>
    Effect.gen(function*() {
      const engine = yield* PlotGeneration.PlotGeneration
      const graceOver = yield* Shutdown.GraceOver
      const share = ClientShare.make(maxRequestsPerClient)
      return handlers
        .handleRaw(
          "generate",
          Effect.fn("PlotsApi.generate")(
            function*({ request }) {
              // Encoded by the API with the endpoint's success schema.
              return yield* underWay(
                share,
                graceOver,
                request,
                Effect.flatMap(readRequest(request, maxBodyBytes), engine.generate)
              )
            },
            Effect.catchAll((error) => Effect.succeed(HttpErrors.errorResponse(error)))
          )
        )
        .handleRaw(
          "stream",
          Effect.fn("PlotsApi.stream")(
            function*({ request }) {
              const first = yield* underWay(
                share,
                graceOver,
                request,
                Effect.gen(function*() {
                  const body = yield* readRequest(request, maxBodyBytes)
                  // Pulled in the request's scope, which stays open until the response is written (or the client
                  // leaves).
                  const pull = yield* Stream.toPull(engine.generateStream(body))
                  return yield* pullPreparation(pull)
                })
              )
              return eventStreamResponse(first, graceOver)
            },
            Effect.catchAll((error) => Effect.succeed(HttpErrors.errorResponse(error)))
          )
        )
    }))

const SystemLive = (gateway: typeof Health.Type["gateway"]) =>
  HttpApiBuilder.group(PlotsApi, "system", (handlers) =>
    Effect.gen(function*() {
      const providers = yield* Providers.Providers
      const limiter = yield* ProviderRateLimiter.ProviderRateLimiter
      return handlers.handle("health", () =>
        Effect.map(limiter.snapshot, (keys) => ({
          status: "ok" as const,
          gateway,
          providers: providers.configured,
          limiter: keys.map((key) => ({
            key: key.key,
            queued: key.queued,
            inFlight: key.inFlight,
            permitsFree: key.permitsFree,
            pausedUntil: key.pausedUntil === undefined ? null : new Date(key.pausedUntil).toISOString()
          }))
        }))).handleRaw("metrics", () => Prometheus.response)
    }))

const UnhandledFailuresLive = HttpApiBuilder.middleware((app) =>
  Effect.catchAllCause(app, (cause) =>
    // Interrupted only: the client has gone, nobody is there to answer.
    Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : HttpErrors.unhandledResponse(cause))
)

// =============================================================================
// The server
// =============================================================================

const projectsDirectory = fileURLToPath(new URL("./projects/", import.meta.url))

/**
 * @category Options
 */
export interface ServerOptions {
  /** The largest request body accepted, in bytes (default 1 MiB); a larger one is answered 413. */
  readonly maxBodyBytes?: number | undefined
  /**
   * On shutdown, how long the requests in flight are given to end before their connections are cut (default 25
   * seconds); no new connection is taken meanwhile.
   */
  readonly shutdownGrace?: Duration.DurationInput | undefined
  /** Connections held at once (default 1,000); one more is closed as it opens. */
  readonly maxConnections?: number | undefined
  /** Generations under way at once from one client address (default 8); one more is answered 429 at once. */
  readonly maxRequestsPerClient?: number | undefined
}

/**
 * The backend on a port: the API, its documentation, the engine and what it needs. A scoped layer: it serves
 * while it lives.
 */
export const ServerLive = (port: number, options: ServerOptions = {}) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const configured = yield* Providers.gatewayConfig
    const gateway = yield* PlotEngine.resolveGateway((line) => Effect.log(line))
    const simulated = gateway.deployments === undefined && configured.openai === undefined &&
      configured.anthropic === undefined
    const api = HttpApiBuilder.api(PlotsApi).pipe(
      Layer.provide(
        PlotsLive(
          options.maxBodyBytes ?? JsonBody.defaultMaxBytes,
          options.maxRequestsPerClient ?? ClientShare.defaultMaxPerClient
        )
      ),
      Layer.provide(SystemLive(simulated ? "simulator" : "providers")),
      Layer.provide(Prometheus.layer)
    )
    const served = HttpApiBuilder.serve().pipe(
      Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
      Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
      Layer.provide(UnhandledFailuresLive),
      Layer.provide(api),
      HttpServer.withLogAddress
    )
    // The HTTP server is in the output, so that whoever builds this layer can read the address (tests listen on 0).
    return Shutdown.layer(
      served,
      { port, host: "127.0.0.1" },
      options.shutdownGrace,
      () => NodeServer.make({ maxConnections: options.maxConnections })
    ).pipe(
      // Under the server: built before it and released after it, so that on shutdown the requests in flight end
      // with the engine still there. (Released first, its HTTP client was closed under them: each call failed,
      // was retried, and the writer got a template.)
      Layer.provide(PlotEngine.layer({
        gateway,
        store: ProjectContextStore.layerDirectory(projectsDirectory),
        // A client waits about a minute: a request that cannot be admitted within 30 s is answered 429 at once.
        limiter: { queueTimeout: "30 seconds" },
        // Clients choose the model: only the catalog's (a made-up name would get a limiter key and quota of its own).
        pinnedModels: "catalog"
      })),
      Layer.provide(NodeContext.layer)
    )
  })).pipe(Layer.provide(NodeContext.layer)) // the deployments file, when one is configured

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  Effect.gen(function*() {
    const port = yield* Config.integer("PORT").pipe(
      Config.validate({
        message: "Expected a port from 0 to 65535",
        validation: (port) => port >= 0 && port <= 65_535
      }),
      Config.withDefault(3000)
    )
    const maxBodyBytes = yield* ConfigValues.integerAtLeast("MAX_BODY_BYTES").pipe(
      Config.withDefault(JsonBody.defaultMaxBytes)
    )
    const shutdownGrace = yield* ConfigValues.duration("SHUTDOWN_GRACE", "allowed").pipe(
      Config.withDefault(Shutdown.defaultGrace)
    )
    const maxConnections = yield* ConfigValues.integerAtLeast("MAX_CONNECTIONS").pipe(
      Config.withDefault(NodeServer.defaultMaxConnections)
    )
    const maxRequestsPerClient = yield* ConfigValues.integerAtLeast("MAX_REQUESTS_PER_CLIENT").pipe(
      Config.withDefault(ClientShare.defaultMaxPerClient)
    )
    return yield* Layer.launch(
      ServerLive(port, { maxBodyBytes, shutdownGrace, maxConnections, maxRequestsPerClient })
    ).pipe(
      // One line that says why (a port in use, one not allowed), not the platform's "An error has occurred" and stack.
      Effect.catchTag("ServeError", (error) =>
        Effect.fail(
          `Cannot listen on 127.0.0.1:${port}: ${
            error.cause instanceof Error
              ? error.cause.message.replace(/^listen \w+: /, "").replace(/ \S+:\d+$/, "")
              : String(error.cause)
          }`
        ))
    )
  }).pipe(NodeRuntime.runMain)
}
