/**
 * Embedding plot-engine in an Effect HTTP backend: an `HttpApi` that provides the `PlotGeneration` layer and
 * serves the projects of `examples/projects/` (each by its file name without `.json` as `projectId`).
 *
 *   POST /plots          a PlotRequest as JSON in, a PlotResult out
 *   POST /plots/stream   the same generation as server-sent events, the last one `completed` (or `error`)
 *   GET  /health         the providers configured and the rate limiter's state (never a key)
 *   GET  /openapi.json   the OpenAPI document; GET /docs shows it in Swagger UI (bundled, no CDN)
 *
 * Bodies: `Content-Type: application/json` (else 415), at most `maxBodyBytes` (default 1 MiB, else 413), JSON
 * nested at most 32 deep (a PlotRequest is flat). The engine checks the request itself, on both endpoints alike:
 * a missing, bad or unknown field is a 400 that names it.
 *
 * Every answer that is not a 2xx has one shape, `{"error":{"type","message","field"?}}`: `type` is
 * `Errors.errorType` for the engine's errors (`validation_error`, `not_found`, `rate_limit`...) or one of this
 * server's (`malformed_json`, `json_too_deep`, `unsupported_media_type`, `payload_too_large`, `incomplete_body`,
 * `not_found_route`, `internal`); `message` is a sentence for people; `field` names the bad field of a 400.
 * A 429 carries `Retry-After` (seconds) when the wait is known.
 *
 * The stream answers with an HTTP status until the engine has checked the request, read the project and chosen a
 * model; those events are held until then. After that it is a 200, and a failure is an `error` event whose data
 * is the same envelope. Event names are the events' `_tag` in snake case: `progress`, `model_selected`,
 * `text_delta`, ..., `completed`, and `error`.
 *
 * Run it with `npm run example:server` (port from `PORT`, default 3000; body limit from `MAX_BODY_BYTES`). With
 * no provider configured it uses the embedded gateway simulator, like the CLI.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSwagger from "@effect/platform/HttpApiSwagger"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerError from "@effect/platform/HttpServerError"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Cause from "effect/Cause"
import type * as Chunk from "effect/Chunk"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import { fileURLToPath } from "node:url"
import * as Alerts from "../src/Alerts.js"
import * as Domain from "../src/Domain.js"
import * as Errors from "../src/Errors.js"
import * as PlotEngine from "../src/PlotEngine.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"

// =============================================================================
// Errors as HTTP answers
// =============================================================================

/**
 * A failure of the HTTP layer itself, before the engine is asked anything (or after a defect).
 */
export class HttpError extends Schema.TaggedError<HttpError>("plot-engine/examples/HttpError")("HttpError", {
  status: Schema.Int,
  type: Schema.Literal(
    "malformed_json",
    "json_too_deep",
    "unsupported_media_type",
    "payload_too_large",
    "incomplete_body",
    "not_found_route",
    "internal"
  ),
  message: Schema.String
}) {
  static malformedJson(reason: string) {
    return new HttpError({
      status: 400,
      type: "malformed_json",
      message: `The request body is not valid JSON: ${reason}.`
    })
  }
  static tooDeep(maxDepth: number) {
    return new HttpError({
      status: 400,
      type: "json_too_deep",
      message: `The JSON body nests deeper than ${maxDepth} levels; a PlotRequest is a flat object.`
    })
  }
  static unsupportedMediaType() {
    return new HttpError({
      status: 415,
      type: "unsupported_media_type",
      message: "Send the request body as JSON, with Content-Type: application/json."
    })
  }
  static payloadTooLarge(maxBytes: number) {
    return new HttpError({
      status: 413,
      type: "payload_too_large",
      message: `The request body is larger than ${maxBytes} bytes; a PlotRequest is far smaller.`
    })
  }
  static incompleteBody() {
    return new HttpError({
      status: 400,
      type: "incomplete_body",
      message: "The request body was cut off before its end."
    })
  }
  static routeNotFound(method: string) {
    return new HttpError({
      status: 404,
      type: "not_found_route",
      message: `No ${method} route at this path: see /openapi.json for the routes.`
    })
  }
  static internal() {
    return new HttpError({
      status: 500,
      type: "internal",
      message: "Something went wrong on our side; it has been logged. Please try again."
    })
  }
}

/** What a client can be told about: the engine's typed errors and the HTTP layer's. */
export type ApiError = Errors.GenerationError | HttpError

const isApiError = (u: unknown): u is ApiError => Errors.isGenerationError(u) || u instanceof HttpError

/**
 * The body of every answer that is not a 2xx, and the data of the stream's `error` event.
 */
export class ErrorEnvelope extends Schema.Class<ErrorEnvelope>("ErrorEnvelope")({
  error: Schema.Struct({
    type: Schema.String.annotations({
      description: "The kind of failure, one word: validation_error, not_found, rate_limit, malformed_json, ..."
    }),
    message: Schema.String.annotations({ description: "What happened and what to do, for people" }),
    field: Schema.optional(Schema.String.annotations({ description: "The request field at fault (400s)" }))
  })
}) {}

/** The HTTP status of each engine error: the caller's fault 4xx, the provider's 502, ours 503/504. */
const engineStatus: { readonly [K in Errors.GenerationError["_tag"]]: number } = {
  RequestValidationError: 400,
  InvalidRequestError: 400,
  ProjectNotFoundError: 404,
  ContextTooLongError: 413,
  RateLimitError: 429,
  QuotaExhaustedError: 429,
  AuthError: 502,
  ServerError: 502,
  NetworkError: 502,
  ResponseParseError: 502,
  IncompleteResponseError: 502,
  // The provider does not serve the model: the deployment's catalog is wrong, not the writer's request.
  ModelNotFoundError: 502,
  ProviderNotConfiguredError: 503,
  TimeoutError: 504
}

/** The status a client sees for an error. */
export const errorStatus = (error: ApiError): number =>
  error._tag === "HttpError" ? error.status : engineStatus[error._tag]

/**
 * Cuts what the envelope repeats from the request (a field's name, a quoted value) to a bounded length: an error
 * answer must never grow with the request.
 */
const bounded = (text: string, max: number) => text.length <= max ? text : `${text.slice(0, max - 1)}…`

/** The envelope of an error. */
export const errorEnvelope = (error: ApiError): typeof ErrorEnvelope.Encoded =>
  error._tag === "HttpError"
    ? { error: { type: error.type, message: error.message } }
    : {
      error: {
        type: Errors.errorType(error),
        message: bounded(Errors.userMessage(error), 600),
        ...(error._tag === "RequestValidationError" ? { field: bounded(error.field, 200) } : {})
      }
    }

/** `Retry-After` in whole seconds, rounded up, when the wait is known (rate limits, quotas). */
export const retryAfterSeconds = (error: ApiError): number | undefined =>
  (error._tag === "RateLimitError" || error._tag === "QuotaExhaustedError") && error.retryAfterMs !== undefined
    ? Math.ceil(error.retryAfterMs / 1000)
    : undefined

/**
 * The HTTP answer to an error: its status, the envelope, and `Retry-After` when the wait is known. A plain
 * function, so that every status and header can be checked without provoking the failure.
 */
export const errorResponse = (error: ApiError): HttpServerResponse.HttpServerResponse => {
  const retryAfter = retryAfterSeconds(error)
  return HttpServerResponse.unsafeJson(errorEnvelope(error), {
    status: errorStatus(error),
    headers: retryAfter === undefined ? {} : { "retry-after": String(retryAfter) }
  })
}

/**
 * The error to tell a client about a failure: its own typed error, or `internal` for anything else (a defect,
 * an interruption), which is logged since the client is told nothing of it.
 */
const clientErrorOf = (cause: Cause.Cause<unknown>): Effect.Effect<ApiError> => {
  const failure = Cause.failureOption(cause)
  return Option.isSome(failure) && isApiError(failure.value)
    ? Effect.succeed(failure.value)
    : Effect.as(Effect.logError("Unexpected failure while answering a request", cause), HttpError.internal())
}

// =============================================================================
// Request bodies
// =============================================================================

/** The default body limit: a PlotRequest is at most a few tens of kilobytes. */
export const defaultMaxBodyBytes = 1024 * 1024

/** After a body is refused, how much more is read and dropped so that the client, still sending, reads the 413. */
const drainBudgetBytes = 16 * 1024 * 1024

/** The deepest nesting accepted: a PlotRequest has none, and Schema's error messages recurse into values. */
const maxJsonDepth = 32

/** Drops what is left of a refused body, then cuts the connection past `drainBudgetBytes`. */
const drain = (source: NodeJS.ReadableStream & { destroy: () => void }) => {
  let dropped = 0
  source.on("data", (chunk: Buffer) => {
    dropped += chunk.length
    if (dropped > drainBudgetBytes) source.destroy()
  })
  source.resume()
}

/**
 * The body's bytes, at most `maxBytes`. Read from Node's request itself: the platform's limit
 * (`HttpIncomingMessage.withMaxBodySize`) destroys the request when it is exceeded, which resets the connection
 * before a 413 can be written. A declared `Content-Length` over the limit is refused without reading.
 */
const readBody = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<Uint8Array, HttpError> => {
  const source = NodeHttpServerRequest.toIncomingMessage(request)
  if (Number(request.headers["content-length"]) > maxBytes) {
    drain(source)
    return Effect.fail(HttpError.payloadTooLarge(maxBytes))
  }
  return Effect.async<Uint8Array, HttpError>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const stop = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBytes) return void chunks.push(chunk)
      stop()
      drain(source)
      resume(Effect.fail(HttpError.payloadTooLarge(maxBytes)))
    }
    const onEnd = () => {
      stop()
      resume(Effect.succeed(Buffer.concat(chunks)))
    }
    const onError = () => {
      stop()
      resume(Effect.fail(HttpError.incompleteBody()))
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(stop)
  })
}

/** Whether a JSON text nests arrays and objects deeper than `max`, counted without parsing it. */
const nestsDeeperThan = (text: string, max: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (inString) {
      if (char === "\\") i++
      else if (char === "\"") inString = false
    } else if (char === "\"") inString = true
    else if (char === "[" || char === "{") {
      if (++depth > max) return true
    } else if (char === "]" || char === "}") depth--
  }
  return false
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** A JSON text parsed, its error said without quoting the body back (V8's messages quote a piece of it). */
const parseJson = (bytes: Uint8Array): Effect.Effect<unknown, HttpError> =>
  Effect.suspend(() => {
    let text: string
    try {
      text = utf8.decode(bytes)
    } catch {
      return Effect.fail(HttpError.malformedJson("it is not UTF-8"))
    }
    if (text.trim() === "") return Effect.fail(HttpError.malformedJson("the body is empty"))
    // Checked before parsing: JSON.parse copes, but a 100,000-deep value overflows the stack of whatever walks it.
    if (nestsDeeperThan(text, maxJsonDepth)) return Effect.fail(HttpError.tooDeep(maxJsonDepth))
    try {
      return Effect.succeed(JSON.parse(text) as unknown)
    } catch (error) {
      const message = String(error)
      const position = /at position (\d+)/.exec(message)?.[1]
      return Effect.fail(HttpError.malformedJson(
        position !== undefined
          ? `unexpected character at position ${position}`
          : message.includes("end of JSON input")
          ? "it ends before the value is complete"
          : "it does not parse"
      ))
    }
  })

/**
 * A request's JSON body, not yet checked: the engine decodes it itself, so that both endpoints apply its rules
 * (unknown fields refused, each bad field named).
 */
const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<Domain.PlotRequestInput, HttpError> => {
  const mediaType = (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
  if (mediaType !== "application/json") return Effect.fail(HttpError.unsupportedMediaType())
  // The cast is the engine's contract: it takes the wire form and validates every field before anything else.
  return Effect.flatMap(readBody(request, maxBytes), parseJson) as Effect.Effect<Domain.PlotRequestInput, HttpError>
}

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

/** The events as `text/event-stream`; a failure once streaming is the last event, `error`, with the envelope. */
const eventStreamResponse = (events: Stream.Stream<Domain.GenerationEvent, Errors.GenerationError>) =>
  HttpServerResponse.stream(
    events.pipe(
      Stream.map((event) => serverSentEvent(eventName(event._tag), encodeEvent(event))),
      Stream.catchAllCause((cause) =>
        Stream.fromEffect(Effect.map(clientErrorOf(cause), (error) => serverSentEvent("error", errorEnvelope(error))))
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

/** What each status means, for the OpenAPI document. */
const errorStatuses = {
  400: "Not JSON, nested too deep, or a field missing, bad or unknown (named in `field`)",
  404: "No such project",
  413: "The body is over the limit, or the project's context too long for the model",
  415: "The body is not application/json",
  429: "Rate limited or out of quota; `Retry-After` (seconds) when the wait is known",
  500: "An unexpected failure, logged",
  502: "The provider failed, refused the key, or does not serve the model",
  503: "The provider asked for is not configured",
  504: "The provider took too long"
} as const

const documentedError = (status: keyof typeof errorStatuses) =>
  [ErrorEnvelope.annotations({ description: errorStatuses[status] }), { status }] as const

/** Both plot endpoints fail the same ways, always with the envelope. */
class PlotsGroup extends HttpApiGroup.make("plots")
  .add(generate)
  .add(stream)
  .addError(...documentedError(400))
  .addError(...documentedError(404))
  .addError(...documentedError(413))
  .addError(...documentedError(415))
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
        operation.responses["400"].description = errorStatuses[400]
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

const PlotsLive = (maxBodyBytes: number) =>
  HttpApiBuilder.group(PlotsApi, "plots", (handlers) =>
    Effect.gen(function*() {
      const engine = yield* PlotGeneration.PlotGeneration
      return handlers
        .handleRaw(
          "generate",
          Effect.fn("PlotsApi.generate")(
            function*({ request }) {
              const body = yield* readJson(request, maxBodyBytes)
              // Encoded by the API with the endpoint's success schema.
              return yield* engine.generate(body)
            },
            Effect.catchAll((error) => Effect.succeed(errorResponse(error)))
          )
        )
        .handleRaw(
          "stream",
          Effect.fn("PlotsApi.stream")(
            function*({ request }) {
              const body = yield* readJson(request, maxBodyBytes)
              // Pulled in the request's scope, which stays open until the response is written (or the client leaves).
              const pull = yield* Stream.toPull(engine.generateStream(body))
              return eventStreamResponse(yield* pullPreparation(pull))
            },
            Effect.catchAll((error) => Effect.succeed(errorResponse(error)))
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
        })))
    }))

/**
 * The answer to a failure no handler answered: an unknown route, or a defect (logged). Never an empty body.
 */
export const unhandledResponse = (
  cause: Cause.Cause<unknown>
): Effect.Effect<HttpServerResponse.HttpServerResponse> => {
  const failure = Cause.failureOption(cause)
  return Option.isSome(failure) && failure.value instanceof HttpServerError.RouteNotFound
    ? Effect.succeed(errorResponse(HttpError.routeNotFound(failure.value.request.method)))
    : Effect.map(clientErrorOf(cause), errorResponse)
}

const UnhandledFailuresLive = HttpApiBuilder.middleware((app) =>
  Effect.catchAllCause(app, (cause) =>
    // Interrupted only: the client has gone, nobody is there to answer.
    Cause.isInterruptedOnly(cause) ? Effect.failCause(cause) : unhandledResponse(cause))
)

// =============================================================================
// The server
// =============================================================================

const projectsDirectory = fileURLToPath(new URL("./projects/", import.meta.url))

/**
 * The engine as `PlotEngine.layer` composes it, but with the providers and the rate limiter kept in its output,
 * the same instances the engine uses, for `/health`.
 */
const EngineLive = (gateway: Providers.GatewayConfig) =>
  PlotGeneration.layerConfig.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        Providers.layer(gateway),
        ProjectContextStore.layerDirectory(projectsDirectory),
        ProviderRateLimiter.layerConfig(),
        Alerts.layer()
      )
    ),
    Layer.provide(NodeHttpClient.layerUndici),
    Layer.provide(PlotEngine.layerOtlpConfig)
  )

/**
 * @category Options
 */
export interface ServerOptions {
  /** The largest request body accepted, in bytes (default 1 MiB); a larger one is answered 413. */
  readonly maxBodyBytes?: number | undefined
}

/**
 * The backend on a port: the API, its documentation, the engine and what it needs. A scoped layer: it serves
 * while it lives.
 */
export const ServerLive = (port: number, options: ServerOptions = {}) =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const configured = yield* Providers.gatewayConfig
    const gateway = yield* PlotEngine.resolveGateway((line) => Effect.log(line))
    const simulated = configured.openai === undefined && configured.anthropic === undefined
    const api = HttpApiBuilder.api(PlotsApi).pipe(
      Layer.provide(PlotsLive(options.maxBodyBytes ?? defaultMaxBodyBytes)),
      Layer.provide(SystemLive(simulated ? "simulator" : "providers"))
    )
    return HttpApiBuilder.serve().pipe(
      Layer.provide(HttpApiSwagger.layer({ path: "/docs" })),
      Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
      Layer.provide(UnhandledFailuresLive),
      Layer.provide(api),
      Layer.provide(EngineLive(gateway)),
      Layer.provide(NodeContext.layer),
      HttpServer.withLogAddress,
      // Merged, so that whoever builds this layer can read the address (tests listen on port 0).
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port, host: "127.0.0.1" }))
    )
  }))

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  Effect.gen(function*() {
    const port = yield* Config.integer("PORT").pipe(Config.withDefault(3000))
    const maxBodyBytes = yield* Config.integer("MAX_BODY_BYTES").pipe(Config.withDefault(defaultMaxBodyBytes))
    return yield* Layer.launch(ServerLive(port, { maxBodyBytes }))
  }).pipe(NodeRuntime.runMain)
}
