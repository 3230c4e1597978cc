/**
 * The gateway simulator's HTTP face: a server on loopback that speaks the OpenAI Responses API
 * (`POST /v1/responses`) and the Anthropic Messages API (`POST /v1/messages`), JSON and SSE, with the real
 * response shapes, usage counts and auth errors. `GET /__simulator/stats` reports what it served.
 *
 * @since 0.1.0
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import * as AnthropicWire from "./AnthropicWire.js"
import * as Core from "./Core.js"
import * as OpenAiWire from "./OpenAiWire.js"
import { encodeSse, isWireError, type SseEvent, type WireError } from "./Wire.js"

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options {
  /** The port to listen on; 0 (the default) takes any free port. */
  readonly port?: number | undefined
  /** The interface to listen on (default `127.0.0.1`: loopback only). */
  readonly host?: string | undefined
  /** Seeds the content: the same request and seed give the same reply (default 1). */
  readonly seed?: number | undefined
  /** The keys each dialect accepts; a dialect without one accepts any non-empty key. */
  readonly apiKeys?: { readonly openai?: string | undefined; readonly anthropic?: string | undefined } | undefined
}

/**
 * What the simulator has served.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Stats {
  readonly requests: number
  readonly byDialect: Readonly<Record<Core.Dialect, number>>
  readonly byStatus: Readonly<Record<string, number>>
  readonly inputTokens: number
  readonly outputTokens: number
}

const emptyStats: Stats = {
  requests: 0,
  byDialect: { openai: 0, anthropic: 0 },
  byStatus: {},
  inputTokens: 0,
  outputTokens: 0
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** The server's root, such as `http://127.0.0.1:41234`. */
  readonly url: string
  /** The base URL to give an OpenAI client (with `/v1`). */
  readonly openaiBaseUrl: string
  /** The base URL to give an Anthropic client (without `/v1`). */
  readonly anthropicBaseUrl: string
  readonly stats: Effect.Effect<Stats>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class GatewaySimulator extends Context.Tag("plot-engine/simulator/GatewaySimulator")<GatewaySimulator, Service>() {}

const bearerToken = (authorization: string | undefined) => authorization?.replace(/^Bearer\s+/i, "")

const sseResponse = (events: ReadonlyArray<SseEvent>, headers: Record<string, string>) =>
  HttpServerResponse.stream(
    Stream.fromIterable(events).pipe(Stream.map(encodeSse), Stream.encodeText),
    { contentType: "text/event-stream", headers: { ...headers, "cache-control": "no-cache" } }
  )

const errorResponse = (error: WireError, headers: Record<string, string>) =>
  HttpServerResponse.unsafeJson(error.body, { status: error.status, headers: { ...headers, ...error.headers } })

/**
 * Starts the simulator's HTTP app on the `HttpServer` in context.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const seed = options.seed ?? 1
  const stats = yield* Ref.make(emptyStats)
  let sequence = 0

  const record = (dialect: Core.Dialect, status: number, reply?: Core.SimReply) =>
    Ref.update(stats, (s) => ({
      requests: s.requests + 1,
      byDialect: { ...s.byDialect, [dialect]: s.byDialect[dialect] + 1 },
      byStatus: { ...s.byStatus, [status]: (s.byStatus[status] ?? 0) + 1 },
      inputTokens: s.inputTokens + (reply?.inputTokens ?? 0),
      outputTokens: s.outputTokens + (reply?.outputTokens ?? 0)
    }))

  const readJson = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.json).pipe(
    Effect.orElseSucceed(() => undefined)
  )

  const keyAccepted = (expected: string | undefined, presented: string | undefined) =>
    presented !== undefined && presented !== "" && (expected === undefined || presented === expected)

  const openai = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const n = ++sequence
    const requestId = `req_sim${n.toString(16).padStart(10, "0")}`
    const headers = { "x-request-id": requestId, "openai-processing-ms": "1" }
    const presented = bearerToken(request.headers.authorization)
    if (!keyAccepted(options.apiKeys?.openai, presented)) {
      yield* record("openai", 401)
      return errorResponse(OpenAiWire.invalidApiKey(presented), headers)
    }
    const parsed = OpenAiWire.parseRequest(yield* readJson)
    if (isWireError(parsed)) {
      yield* record("openai", parsed.status)
      return errorResponse(parsed, headers)
    }
    const outcome = Core.respond(parsed, seed)
    if (outcome._tag !== "Reply") {
      const error = OpenAiWire.faultError(outcome)
      yield* record("openai", error.status)
      return errorResponse(error, headers)
    }
    yield* record("openai", 200, outcome)
    const ids = { responseId: `resp_sim${n.toString(16).padStart(12, "0")}`, messageId: `msg_sim${n.toString(16).padStart(12, "0")}`, createdAt: Math.floor(Date.now() / 1000) }
    return parsed.stream
      ? sseResponse(OpenAiWire.streamEvents(parsed, outcome, ids), headers)
      : HttpServerResponse.unsafeJson(OpenAiWire.responseObject(parsed, outcome, ids, "final"), { headers })
  })

  const anthropic = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const n = ++sequence
    const requestId = `req_sim${n.toString(16).padStart(10, "0")}`
    const headers = { "request-id": requestId }
    // Anthropic takes the key as `x-api-key`; its newer SDKs send it as a bearer token, which it also accepts.
    const presented = request.headers["x-api-key"] ?? bearerToken(request.headers.authorization)
    if (!keyAccepted(options.apiKeys?.anthropic, presented)) {
      yield* record("anthropic", 401)
      return errorResponse(AnthropicWire.invalidApiKey(requestId), headers)
    }
    const parsed = AnthropicWire.parseRequest(yield* readJson)
    if (isWireError(parsed)) {
      yield* record("anthropic", parsed.status)
      return errorResponse(parsed, headers)
    }
    const outcome = Core.respond(parsed, seed)
    if (outcome._tag !== "Reply") {
      const error = AnthropicWire.faultError(outcome, requestId)
      yield* record("anthropic", error.status)
      return errorResponse(error, headers)
    }
    yield* record("anthropic", 200, outcome)
    const ids = { messageId: `msg_sim${n.toString(16).padStart(16, "0")}`, toolUseId: `toolu_sim${n.toString(16).padStart(14, "0")}` }
    return parsed.stream
      ? sseResponse(AnthropicWire.streamEvents(parsed, outcome, ids), headers)
      : HttpServerResponse.unsafeJson(AnthropicWire.messageObject(parsed, outcome, ids), { headers })
  })

  const app = HttpRouter.empty.pipe(
    HttpRouter.post("/v1/responses", openai),
    HttpRouter.post("/v1/messages", anthropic),
    HttpRouter.get("/__simulator/stats", Effect.map(Ref.get(stats), (s) => HttpServerResponse.unsafeJson(s)))
  )
  yield* HttpServer.serveEffect(app)
  const server = yield* HttpServer.HttpServer
  const url = HttpServer.formatAddress(server.address).replace("0.0.0.0", "127.0.0.1")
  return GatewaySimulator.of({
    url,
    openaiBaseUrl: `${url}/v1`,
    anthropicBaseUrl: url,
    stats: Ref.get(stats)
  })
})

/**
 * The simulator as a scoped layer: it listens while the layer lives.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options = {}) =>
  Layer.scoped(GatewaySimulator, make(options)).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port: options.port ?? 0, host: options.host ?? "127.0.0.1" }))
  )
