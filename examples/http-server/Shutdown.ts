/**
 * Shutting the server down gently: it stops taking connections at once, the requests in flight get a grace period
 * to end (a plot being streamed is written to its end), and the connections still open after it are cut (their
 * requests are interrupted, and the engine stops their calls). Node's own `close` waits for every connection,
 * however long a client keeps it; an orchestrator stops waiting after its own grace (Kubernetes: 30 s) and kills
 * the process, requests, ledger and all.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { createServer, type Server } from "node:http"
import type { ListenOptions } from "node:net"

/** How long the requests in flight are given to end by default: within Kubernetes' 30 s, with room to stop. */
export const defaultGrace: Duration.Duration = Duration.seconds(25)

/**
 * `NodeHttpServer.layer` on a new `node:http` server (`create`'s), released gently: first (before the server itself, which is
 * built first) it stops listening and waits up to `grace` for the connections open to close, then cuts the rest.
 */
export const layer = (
  listen: ListenOptions,
  grace: Duration.DurationInput = defaultGrace,
  create: () => Server = createServer
) => {
  let server: Server | undefined
  const drainOnRelease = Layer.scopedDiscard(
    Effect.addFinalizer(() => server === undefined ? Effect.void : drain(server, Duration.decode(grace)))
  )
  return drainOnRelease.pipe(Layer.provideMerge(NodeHttpServer.layer(() => (server = create()), listen)))
}

const drain = (server: Server, grace: Duration.Duration) =>
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
    const cut = yield* openConnections(server)
    yield* Effect.logWarning(`Shutting down: cut ${cut} connection(s) still open after ${Duration.format(grace)}`)
    server.closeAllConnections()
    yield* Deferred.await(closed)
  })

const openConnections = (server: Server) =>
  Effect.async<number>((resume) => {
    server.getConnections((error, count) => resume(Effect.succeed(error ? 0 : count)))
  })
