/**
 * The example server's errors as HTTP answers: one envelope, `{"error":{"type","message","field"?}}`, for every
 * status that is not a 2xx, whether the engine failed (its `Errors.errorType` and `Errors.userMessage`) or the HTTP
 * layer did (a body that is not JSON, too large, a route that does not exist, a defect).
 */
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"
import * as Errors from "../../src/Errors.js"

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
    "malformed_request",
    "request_timeout",
    "not_found_route",
    "expectation_failed",
    "too_many_requests",
    "shutting_down",
    "internal"
  ),
  message: Schema.String,
  /** Seconds to wait before trying again, when the server can say (`Retry-After`). */
  retryAfterSeconds: Schema.optional(Schema.Int)
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
  static unsupportedEncoding(encoding: string) {
    return new HttpError({
      status: 415,
      type: "unsupported_media_type",
      message: `Send the request body uncompressed: Content-Encoding ${encoding} is not accepted.`
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
  static malformedRequest(status: 400 | 431 = 400) {
    return new HttpError({
      status,
      type: "malformed_request",
      message: status === 431
        ? "The request's headers are too large."
        : "The request is not valid HTTP, or ended before its body did."
    })
  }
  static requestTimeout() {
    return new HttpError({
      status: 408,
      type: "request_timeout",
      message: "The request did not arrive in time: send its headers and body without pausing."
    })
  }
  static routeNotFound(method: string) {
    return new HttpError({
      status: 404,
      type: "not_found_route",
      message: `No ${method} route at this path: see /openapi.json for the routes.`
    })
  }
  static expectationFailed() {
    return new HttpError({
      status: 417,
      type: "expectation_failed",
      message: "The server meets no `Expect` but 100-continue: send the request without it."
    })
  }
  /** One request more than a client's share of the server (see `ClientShare`). */
  static tooManyRequests(maxPerClient: number) {
    return new HttpError({
      status: 429,
      type: "too_many_requests",
      message:
        `This client already has ${maxPerClient} generations under way, the most one client may: wait for one to end.`,
      retryAfterSeconds: 1
    })
  }
  /** A request still running when the server's shutdown grace ended: another instance will take it. */
  static shuttingDown() {
    return new HttpError({
      status: 503,
      type: "shutting_down",
      message: "This server is shutting down: send the request again.",
      // The next try goes to another instance.
      retryAfterSeconds: 1
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
    field: Schema.optional(Schema.String.annotations({ description: "The request field at fault (400s)" })),
    retry_after: Schema.optional(Schema.Int.annotations({
      description: "Seconds to wait before trying again, when the wait is known (429s, and 503 `shutting_down`; the " +
        "`Retry-After` header's, which a stream's `error` event cannot carry)"
    }))
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
  // The models declined the content: the request was understood, and will not be written as it stands.
  RefusalError: 422,
  ProviderNotConfiguredError: 503,
  // The project's own spend limit, not the provider's: the client may come back when the period resets.
  BudgetExceededError: 429,
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
export const errorEnvelope = (error: ApiError): typeof ErrorEnvelope.Encoded => {
  const retryAfter = retryAfterSeconds(error)
  return {
    error: {
      ...(error._tag === "HttpError"
        ? { type: error.type, message: error.message }
        : { type: Errors.errorType(error), message: bounded(Errors.userMessage(error), 600) }),
      ...(error._tag === "RequestValidationError" ? { field: bounded(error.field, 200) } : {}),
      ...(retryAfter === undefined ? {} : { retry_after: retryAfter })
    }
  }
}

/**
 * `Retry-After` in whole seconds, rounded up, when the wait is known: rate limits and quotas, and the server's own
 * errors that say it (a server shutting down, a client over its share).
 */
export const retryAfterSeconds = (error: ApiError): number | undefined =>
  error._tag === "HttpError"
    ? error.retryAfterSeconds
    : (error._tag === "RateLimitError" || error._tag === "QuotaExhaustedError") && error.retryAfterMs !== undefined
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
 * Node answers a request it cannot read (malformed, cut off with the connection half closed, headers too large or
 * too slow) on its own, with a bare status line and no body: these answer with the envelope too, then close.
 */
export const answerClientErrors = (server: Server): Server =>
  server
    .on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
      // As Node does: nothing written into a response already under way (its bytes would land inside its body).
      const underWay = (socket as { readonly _httpMessage?: { readonly headersSent?: boolean } })._httpMessage
      if (!socket.writable || error.code === "ECONNRESET" || underWay?.headersSent === true) return socket.destroy()
      answerOnSocket(
        socket,
        error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? HttpError.requestTimeout()
          : HttpError.malformedRequest(error.code === "HPE_HEADER_OVERFLOW" ? 431 : 400)
      )
    })
    // A CONNECT (a proxy's tunnel) is none of the routes; without a listener, Node closed the socket unanswered.
    .on("connect", (_request: IncomingMessage, socket: Duplex) =>
      answerOnSocket(socket, HttpError.routeNotFound("CONNECT")))
    // An `Expect` other than 100-continue: Node's bare 417, without a body, otherwise.
    .on("checkExpectation", (_request: IncomingMessage, response: ServerResponse) => {
      const answer = HttpError.expectationFailed()
      const body = JSON.stringify(errorEnvelope(answer))
      response.writeHead(answer.status, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        connection: "close"
      })
      response.end(body)
    })

/** Writes `answer` as a whole HTTP response on a raw socket, then closes it both ways. */
const answerOnSocket = (socket: Duplex, answer: HttpError) => {
  const body = JSON.stringify(errorEnvelope(answer))
  // Closed both ways: the client's side may stay open (Node keeps such sockets half open), holding it.
  socket.end(
    `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status]}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    () => socket.destroy()
  )
}

/**
 * The error to tell a client about a failure: its own typed error, or `internal` for anything else (a defect,
 * an interruption), which is logged since the client is told nothing of it.
 */
export const clientErrorOf = (cause: Cause.Cause<unknown>): Effect.Effect<ApiError> => {
  const failure = Cause.failureOption(cause)
  return Option.isSome(failure) && isApiError(failure.value)
    ? Effect.succeed(failure.value)
    : Effect.as(Effect.logError("Unexpected failure while answering a request", cause), HttpError.internal())
}

/** What each status means, for the OpenAPI document. */
export const statusDescriptions = {
  400: "Not JSON, nested too deep, or a field missing, bad or unknown (named in `field`)",
  404: "No such project",
  413: "The body is over the limit, or the project's context too long for the model",
  415: "The body is not application/json, or is compressed",
  422: "The model declined to write it (a refusal or content policy); the same request would be declined again",
  429: "Rate limited or out of quota, or the client over its share (`too_many_requests`); `Retry-After` (seconds) " +
    "when the wait is known",
  500: "An unexpected failure, logged",
  502: "The provider failed, refused the key, or does not serve the model",
  503: "The provider asked for is not configured, or the server is shutting down (`shutting_down`: send it again)",
  504: "The provider took too long"
} as const

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
