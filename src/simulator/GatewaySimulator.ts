/**
 * The gateway simulator's HTTP face: a server on loopback that speaks the OpenAI Responses API
 * (`POST /v1/responses`) and the Anthropic Messages API (`POST /v1/messages`), JSON and SSE, with the real
 * response shapes, usage counts and auth errors. `GET /__simulator/stats` reports what it served.
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import type { Socket } from "node:net"
import * as AnthropicWire from "./AnthropicWire.js"
import * as Content from "./Content.js"
import * as Core from "./Core.js"
import * as Faults from "./Faults.js"
import * as OpenAiWire from "./OpenAiWire.js"
import * as PromptCache from "./PromptCache.js"
import * as Quotas from "./Quotas.js"
import * as Wire from "./Wire.js"

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
  /**
   * The keys each dialect accepts (several: one per deployment, each with its own quota and faults); a dialect
   * without one accepts any non-empty key.
   */
  readonly apiKeys?: {
    readonly openai?: string | ReadonlyArray<string> | undefined
    readonly anthropic?: string | ReadonlyArray<string> | undefined
  } | undefined
  /** Random fault rates and latency from the start (scripts are set with `script`). */
  readonly faults?: Faults.RandomFaults | undefined
  /** Quotas per API key and model (none by default). */
  readonly quotas?: Quotas.QuotaOptions | undefined
  /**
   * The time between a streamed answer's events, in milliseconds: each is then written on its own, as a provider
   * writes an answer while the model makes it. By default (0) a stream is written at once, in as few writes as the
   * server makes of it. A stream with a fault is written as its fault shapes it, unpaced.
   */
  readonly eventIntervalMs?: number | undefined
}

/**
 * What the simulator has served.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Stats {
  /** Every request that reached a provider endpoint (each attempt a client made). */
  readonly requests: number
  readonly byDialect: Readonly<Record<Core.Dialect, number>>
  readonly byStatus: Readonly<Record<string, number>>
  readonly faults: Readonly<Partial<Record<Faults.FaultKind, number>>>
  /** Requests whose client went away before the answer was complete. */
  readonly closedByClient: number
  readonly inputTokens: number
  readonly outputTokens: number
  /** What the requests answered 200 asked for: prompt plus max output tokens, as OpenAI's quota counts them. */
  readonly requestedTokens: number
}

const emptyStats: Stats = {
  requests: 0,
  byDialect: { openai: 0, anthropic: 0 },
  byStatus: {},
  faults: {},
  closedByClient: 0,
  inputTokens: 0,
  outputTokens: 0,
  requestedTokens: 0
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
  /** Scripts the answers to the next requests made with an API key, in order (`"ok"` for a normal reply). */
  readonly script: (apiKey: string, steps: ReadonlyArray<Faults.ScriptStep>) => Effect.Effect<void>
  /** Sets the random fault rates and latency. */
  readonly setRandomFaults: (faults: Faults.RandomFaults) => Effect.Effect<void>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class GatewaySimulator
  extends Context.Tag("plot-engine/simulator/GatewaySimulator")<GatewaySimulator, Service>()
{}

const bearerToken = (authorization: string | undefined) => authorization?.replace(/^Bearer\s+/i, "")

const keyList = (keys: string | ReadonlyArray<string> | undefined): ReadonlyArray<string> | undefined =>
  keys === undefined ? undefined : typeof keys === "string" ? [keys] : keys

/** What differs between the two APIs: paths, headers, bodies and events. */
interface Face<R extends Core.SimRequest> {
  readonly dialect: Core.Dialect
  /** The keys accepted; `undefined`: any non-empty key. */
  readonly expectedKeys: ReadonlyArray<string> | undefined
  readonly presentedKey: (headers: Readonly<Record<string, string | undefined>>) => string | undefined
  readonly headers: (requestId: string) => Record<string, string>
  readonly invalidKey: (presented: string | undefined, requestId: string) => Wire.WireError
  readonly parse: (body: unknown) => R | Wire.WireError
  readonly faultError: (
    fault: Faults.Fault | Core.SimFault,
    request: R,
    requestId: string
  ) => Wire.WireError | undefined
  readonly json: (request: R, reply: Core.SimReply, n: number, createdAt: number) => unknown
  readonly events: (request: R, reply: Core.SimReply, n: number, createdAt: number) => Array<Wire.SseEvent>
  readonly streamError: (
    fault: Faults.Fault,
    request: R,
    reply: Core.SimReply,
    n: number,
    createdAt: number,
    sequence: number
  ) => Wire.SseEvent
}

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0")

const openAiFace = (expectedKeys: ReadonlyArray<string> | undefined): Face<OpenAiWire.OpenAiRequest> => {
  const ids = (n: number, createdAt: number) => ({
    responseId: `resp_sim${hex(n, 12)}`,
    messageId: `msg_sim${hex(n, 12)}`,
    createdAt
  })
  return {
    dialect: "openai",
    expectedKeys,
    presentedKey: (headers) => bearerToken(headers.authorization),
    headers: (requestId) => ({ "x-request-id": requestId, "openai-processing-ms": "1" }),
    invalidKey: (presented) => OpenAiWire.invalidApiKey(presented),
    parse: OpenAiWire.parseRequest,
    faultError: (fault, request) => OpenAiWire.faultError(fault, request),
    json: (request, reply, n, createdAt) => OpenAiWire.responseObject(request, reply, ids(n, createdAt), "final"),
    events: (request, reply, n, createdAt) => OpenAiWire.streamEvents(request, reply, ids(n, createdAt)),
    streamError: (fault, request, reply, n, createdAt, sequence) =>
      OpenAiWire.streamErrorEvent(
        fault,
        request,
        sequence,
        () => OpenAiWire.responseObject(request, reply, ids(n, createdAt), "in_progress")
      )
  }
}

const anthropicFace = (expectedKeys: ReadonlyArray<string> | undefined): Face<AnthropicWire.AnthropicRequest> => {
  const ids = (n: number) => ({ messageId: `msg_sim${hex(n, 16)}`, toolUseId: `toolu_sim${hex(n, 14)}` })
  return {
    dialect: "anthropic",
    expectedKeys,
    // Anthropic takes the key as `x-api-key`; its newer SDKs send it as a bearer token, which it also accepts.
    presentedKey: (headers) => headers["x-api-key"] ?? bearerToken(headers.authorization),
    headers: (requestId) => ({ "request-id": requestId }),
    invalidKey: (_, requestId) => AnthropicWire.invalidApiKey(requestId),
    parse: AnthropicWire.parseRequest,
    faultError: AnthropicWire.faultError,
    json: (request, reply, n) => AnthropicWire.messageObject(request, reply, ids(n)),
    events: (request, reply, n) => AnthropicWire.streamEvents(request, reply, ids(n)),
    streamError: (fault) => AnthropicWire.streamErrorEvent(fault)
  }
}

const sseResponse = (
  events: ReadonlyArray<Wire.SseEvent>,
  headers: Record<string, string>,
  tail = "",
  silence: Stream.Stream<never> = Stream.empty,
  after: ReadonlyArray<Wire.SseEvent> = []
) =>
  sseBody(
    Stream.fromIterable(events).pipe(
      Stream.map(Wire.encodeSse),
      Stream.concat(Stream.make(tail)),
      Stream.concat(silence),
      Stream.concat(Stream.fromIterable(after).pipe(Stream.map(Wire.encodeSse)))
    ),
    headers
  )

/** A whole streamed answer: at once, or each event on its own `intervalMs` after the one before. */
const pacedSseResponse = (events: ReadonlyArray<Wire.SseEvent>, headers: Record<string, string>, intervalMs: number) =>
  intervalMs > 0
    ? sseBody(
      Stream.fromIterable(events).pipe(Stream.map(Wire.encodeSse), Stream.schedule(Schedule.spaced(intervalMs))),
      headers
    )
    : sseResponse(events, headers)

const sseBody = (text: Stream.Stream<string>, headers: Record<string, string>) =>
  HttpServerResponse.stream(Stream.encodeText(text), {
    contentType: "text/event-stream",
    headers: { ...headers, "cache-control": "no-cache" }
  })

/** Completes when the client closes the connection. */
const closed = (socket: Socket) =>
  Effect.async<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    const onClose = () => resume(Effect.void)
    socket.once("close", onClose)
    return Effect.sync(() => socket.off("close", onClose))
  })

const errorResponse = (error: Wire.WireError, headers: Record<string, string>) =>
  typeof error.body === "string"
    ? HttpServerResponse.text(error.body, { status: error.status, headers: { ...headers, ...error.headers } })
    : HttpServerResponse.unsafeJson(error.body, { status: error.status, headers: { ...headers, ...error.headers } })

/** A request the fault plan picked a fault for that is not an error body: how its answer goes wrong. */
interface FaultedRequest<R extends Core.SimRequest> {
  readonly face: Face<R>
  readonly fault: Faults.Fault
  readonly request: R
  /** The reply a cut-short answer starts from. */
  readonly reply: Core.SimReply
  readonly n: number
  readonly createdAt: number
  readonly headers: Record<string, string>
  readonly socket: Socket
  readonly hangMs: number
  readonly record: (status: number, reply?: Core.SimReply) => Effect.Effect<void>
  readonly clientClosed: Effect.Effect<void>
}

/**
 * A connection held silent (`hang`) or dropped (`reset`), or an answer cut short: half a JSON body, half a stream
 * (`truncated_sse`), half a stream then a broken event (`malformed_json`) or an error event (`stream_error`), or
 * half a stream then silence (`stall`).
 */
const answerFault = <R extends Core.SimRequest>(
  faulted: FaultedRequest<R>
): Effect.Effect<HttpServerResponse.HttpServerResponse> =>
  Effect.gen(function*() {
    const { createdAt, face, fault, headers, n, reply, request, socket } = faulted
    switch (fault.kind) {
      case "stall":
      case "hang":
        if (fault.kind === "stall" && request.stream) {
          yield* faulted.record(200, reply)
          const events = face.events(request, reply, n, createdAt)
          const half = events.slice(0, Math.max(2, Math.floor(events.length / 2)))
          // The connection stays open and says nothing more; the client's closing interrupts the sleep.
          return sseResponse(half, headers, "", Stream.drain(Stream.fromEffect(Effect.sleep(faulted.hangMs))))
        }
        yield* faulted.record(0)
        // Hold the connection without a word until the client gives up (or the hang ends).
        if (
          yield* Effect.raceFirst(Effect.as(Effect.sleep(faulted.hangMs), false), Effect.as(closed(socket), true))
        ) {
          yield* faulted.clientClosed
        }
        socket.destroy()
        return HttpServerResponse.empty()
      case "reset":
        yield* faulted.record(0)
        socket.destroy()
        return HttpServerResponse.empty()
      case "slow_first_token": {
        yield* faulted.record(200, reply)
        if (!request.stream) {
          yield* Effect.sleep(faulted.hangMs)
          return HttpServerResponse.text(JSON.stringify(face.json(request, reply, n, createdAt)), {
            headers: { ...headers, "content-type": "application/json" }
          })
        }
        // The response begins (its metadata), then nothing is written for the hang, then the whole answer.
        const events = face.events(request, reply, n, createdAt)
        const silence = Stream.drain(Stream.fromEffect(Effect.sleep(faulted.hangMs)))
        return sseResponse(events.slice(0, 2), headers, "", silence, events.slice(2))
      }
      case "malformed_json":
      case "missing_terminator":
      case "truncated_sse":
      case "stream_error":
      case "stream_rate_limit":
      case "stream_error_flat":
      case "response_failed": {
        yield* faulted.record(200, reply)
        const events = face.events(request, reply, n, createdAt)
        const half = events.slice(0, Math.max(2, Math.floor(events.length / 2)))
        if (!request.stream) {
          const body = JSON.stringify(face.json(request, reply, n, createdAt))
          return HttpServerResponse.text(body.slice(0, Math.floor(body.length / 2)), {
            headers: { ...headers, "content-type": "application/json" }
          })
        }
        return fault.kind === "malformed_json"
          ? sseResponse(half, headers, `event: ${events[half.length]?.event ?? "message"}\ndata: {"type":"resp\n\n`)
          // Every event but the last: the whole answer written, the response never finished.
          : fault.kind === "missing_terminator"
          ? sseResponse(events.slice(0, -1), headers)
          : fault.kind === "truncated_sse"
          ? sseResponse(half, headers)
          : sseResponse([...half, face.streamError(fault, request, reply, n, createdAt, half.length)], headers)
      }
      default:
        return yield* Effect.dieMessage(`fault ${fault.kind} has no HTTP answer`)
    }
  })

/**
 * Starts the simulator's HTTP app on the `HttpServer` in context.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = Effect.fnUntraced(function*(options: Options = {}) {
  const seed = options.seed ?? 1
  const stats = yield* Ref.make(emptyStats)
  const plan = Faults.makePlan(seed, options.faults)
  const quotas = Quotas.make(options.quotas ?? {})
  const promptCache = PromptCache.make()
  let sequence = 0

  /** A request counted as it arrives: one the client gives up on while it waits for its answer counts too. */
  const arrived = (dialect: Core.Dialect) =>
    Ref.update(stats, (s) => ({
      ...s,
      requests: s.requests + 1,
      byDialect: { ...s.byDialect, [dialect]: s.byDialect[dialect] + 1 }
    }))

  /** What a request was answered. */
  const record = (status: number, fault?: Faults.FaultKind, reply?: Core.SimReply) =>
    Ref.update(stats, (s) => ({
      ...s,
      byStatus: { ...s.byStatus, [status]: (s.byStatus[status] ?? 0) + 1 },
      faults: fault === undefined ? s.faults : { ...s.faults, [fault]: (s.faults[fault] ?? 0) + 1 },
      inputTokens: s.inputTokens + (reply?.inputTokens ?? 0),
      outputTokens: s.outputTokens + (reply?.outputTokens ?? 0)
    }))

  const clientClosed = Ref.update(stats, (s) => ({ ...s, closedByClient: s.closedByClient + 1 }))

  const readJson = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.json).pipe(
    Effect.orElseSucceed(() => undefined)
  )

  const serve = <R extends Core.SimRequest>(face: Face<R>) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      yield* arrived(face.dialect)
      const n = ++sequence
      const requestId = `req_sim${hex(n, 10)}`
      const headers = face.headers(requestId)
      const presented = face.presentedKey(request.headers)
      if (
        presented === undefined || presented === "" ||
        (face.expectedKeys !== undefined && !face.expectedKeys.includes(presented))
      ) {
        yield* record(401)
        return errorResponse(face.invalidKey(presented, requestId), headers)
      }
      const parsed = face.parse(yield* readJson)
      if (Wire.isWireError(parsed)) {
        yield* record(parsed.status)
        return errorResponse(parsed, headers)
      }
      const inputTokens = Content.countTokens(parsed.prompt)
      const now = yield* Clock.currentTimeMillis
      const cache = face.dialect === "openai"
        ? promptCache.openai(presented, parsed.model, parsed.prompt, now)
        : promptCache.anthropic(presented, parsed.model, parsed.breakpoint, now)
      // Anthropic does not count input read from its cache against the input tokens per minute; OpenAI does.
      const admission = quotas.admit(face.dialect, presented, parsed.model, {
        inputTokens: face.dialect === "anthropic" ? inputTokens - cache.readTokens : inputTokens,
        maxOutputTokens: parsed.maxOutputTokens
      }, now)
      const fault = plan.next(presented) ?? (admission._tag === "Limited" ? Core.quotaFault(admission) : undefined)
      const random = plan.random()
      if (random.latencyMs !== undefined && random.latencyMs > 0) yield* Effect.sleep(random.latencyMs)
      const outcome = Core.respond(parsed, seed, inputTokens)
      if (outcome._tag !== "Reply" && fault === undefined) {
        const error = face.faultError(outcome, parsed, requestId)!
        yield* record(error.status)
        return errorResponse(error, headers)
      }
      const reply: Core.SimReply = outcome._tag === "Reply"
        ? { ...(fault?.kind === "cut_off" ? Core.cutOff(outcome, parsed) : outcome), cache }
        : {
          _tag: "Reply",
          text: "",
          object: undefined,
          inputTokens: 0,
          outputTokens: 0,
          reasoningTokens: 0,
          stopReason: "end"
        }
      const createdAt = Math.floor((yield* Clock.currentTimeMillis) / 1000)
      if (fault !== undefined && fault.kind !== "cut_off") {
        const error = face.faultError(fault, parsed, requestId)
        if (error !== undefined) {
          yield* record(error.status, fault.kind)
          return errorResponse(error, headers)
        }
        return yield* answerFault({
          face,
          fault,
          request: parsed,
          reply,
          n,
          createdAt,
          headers,
          socket: NodeHttpServerRequest.toIncomingMessage(request).socket,
          hangMs: random.hangMs ?? Faults.defaultHangMs,
          record: (status, reply) => record(status, fault.kind, reply),
          clientClosed
        })
      }
      yield* record(200, undefined, reply)
      yield* Ref.update(stats, (s) => ({
        ...s,
        requestedTokens: s.requestedTokens + inputTokens + parsed.maxOutputTokens
      }))
      if (admission._tag === "Admitted") admission.settle(reply.outputTokens, yield* Clock.currentTimeMillis)
      const answerHeaders = { ...headers, ...admission.headers }
      return parsed.stream
        ? pacedSseResponse(face.events(parsed, reply, n, createdAt), answerHeaders, options.eventIntervalMs ?? 0)
        : HttpServerResponse.unsafeJson(face.json(parsed, reply, n, createdAt), { headers: answerHeaders })
    }).pipe(Effect.onInterrupt(() => clientClosed))

  const app = HttpRouter.empty.pipe(
    HttpRouter.post("/v1/responses", serve(openAiFace(keyList(options.apiKeys?.openai)))),
    HttpRouter.post("/v1/messages", serve(anthropicFace(keyList(options.apiKeys?.anthropic)))),
    HttpRouter.get("/__simulator/stats", Effect.map(Ref.get(stats), (s) => HttpServerResponse.unsafeJson(s)))
  )
  yield* HttpServer.serveEffect(app)
  const server = yield* HttpServer.HttpServer
  const url = HttpServer.formatAddress(server.address).replace("0.0.0.0", "127.0.0.1")
  return GatewaySimulator.of({
    url,
    openaiBaseUrl: `${url}/v1`,
    anthropicBaseUrl: url,
    stats: Ref.get(stats),
    script: (apiKey, steps) => Effect.sync(() => plan.script(apiKey, steps)),
    setRandomFaults: (faults) => Effect.sync(() => plan.setRandom(faults))
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
