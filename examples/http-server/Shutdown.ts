/**
 * Shutting the server down gently: it stops taking connections at once, the requests in flight get a grace period
 * to end (a plot being streamed is written to its end), and those still running after it are answered that the
 * server is shutting down (`GraceOver`: the app's requests are interrupted, and the engine stops their calls), then
 * the connections still open are cut. Node's own `close` waits for every connection, however long a client keeps
 * it; an orchestrator stops waiting after its own grace (Kubernetes: 30 s) and kills the process, requests, ledger
 * and all.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { createServer, type Server } from "node:http"
import type { ListenOptions } from "node:net"

/** How long the requests in flight are given to end by default: within Kubernetes' 30 s, with room to stop. */
export const defaultGrace: Duration.Duration = Duration.seconds(25)

/** How long the connections cut after the grace are given to close. */
const closeTimeout = Duration.seconds(5)

/** How long the requests still running after the grace are given to answer that the server is shutting down. */
const answerTimeout = Duration.seconds(1)

/**
 * Ends once the shutdown's grace is over: a request still running then answers that the server is shutting down
 * (the client sends it again, to another instance), rather than having its connection cut without an answer.
 */
export class GraceOver
  extends Context.Tag("examples/http-server/Shutdown/GraceOver")<GraceOver, Effect.Effect<void>>()
{}

/**
 * `serve` (an app served on `HttpServer`) on a new `node:http` server (`create`'s), listening on `listen`, released
 * gently: before the app stops handling requests, the server stops listening, the requests in flight (and those
 * that come on connections already open) are answered with `Connection: close`, those still running after `grace`
 * are told `GraceOver` (given a second to answer), and the connections still open then are cut.
 */
export const layer = <A, E, R>(
  serve: Layer.Layer<A, E, R>,
  listen: ListenOptions,
  grace: Duration.DurationInput = defaultGrace,
  create: () => Server = createServer
) =>
  Layer.suspend(() => {
    let server: Server | undefined
    let draining = false
    const graceOver = Deferred.unsafeMake<void>(FiberId.none)
    const made = () => {
      server = create()
      const current = server
      current.on("request", (_request, response) => {
        // A connection kept alive past its response would hold the drain to its keep-alive timeout, and a request
        // sent on it after its handler is gone would get no answer: closed with its response instead.
        if (draining) response.shouldKeepAlive = false
        response.once("finish", () => {
          if (draining) setImmediate(() => current.closeIdleConnections())
        })
      })
      return current
    }
    // Built after the app (it needs nothing, but is provided over it), so released before it: the app still
    // answers while the drain runs.
    const drainOnRelease = Layer.scopedDiscard(Effect.addFinalizer(() =>
      Effect.suspend(() => {
        if (server === undefined) return Effect.void
        draining = true
        return drain(server, Duration.decode(grace), graceOver)
      })
    ))
    return drainOnRelease.pipe(
      Layer.provideMerge(
        serve.pipe(
          Layer.provide(Layer.succeed(GraceOver, Deferred.await(graceOver))),
          Layer.provideMerge(NodeHttpServer.layer(made, listen))
        )
      )
    )
  })

const drain = (server: Server, grace: Duration.Duration, graceOver: Deferred.Deferred<void>) =>
  Effect.gen(function*() {
    if (!server.listening) return
    const closed = yield* Deferred.make<void>()
    // Stops taking connections, closes those that are idle, and calls back once the last one has closed.
    server.close(() => Deferred.unsafeDone(closed, Effect.void))
    const open = yield* openConnections(server)
    if (open > 0) {
      yield* Effect.logInfo(`Shutting down: ${open} connection(s) open, given ${Duration.format(grace)} to end`)
    }
    // Interruptible: a finalizer is not, and the grace could not cut the wait short otherwise.
    const ended = yield* Deferred.await(closed).pipe(Effect.interruptible, Effect.timeout(grace), Effect.option)
    if (Option.isSome(ended)) return
    const running = yield* openConnections(server)
    yield* Effect.logWarning(
      `Shutting down: ${running} connection(s) still open after ${Duration.format(grace)}; ` +
        "their requests are answered that the server is shutting down"
    )
    yield* Deferred.succeed(graceOver, undefined)
    const answered = yield* Deferred.await(closed).pipe(
      Effect.interruptible,
      Effect.timeout(answerTimeout),
      Effect.option
    )
    if (Option.isSome(answered)) return
    const cut = yield* openConnections(server)
    yield* Effect.logWarning(`Shutting down: cut ${cut} connection(s) still open`)
    server.closeAllConnections()
    yield* Deferred.await(closed).pipe(Effect.interruptible, Effect.timeoutOption(closeTimeout))
  })

const openConnections = (server: Server) =>
  Effect.async<number>((resume) => {
    server.getConnections((error, count) => resume(Effect.succeed(error ? 0 : count)))
  })
