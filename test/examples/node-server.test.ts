/**
 * The example server's Node server: bounded for clients it does not trust.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { Server } from "node:http"
import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import * as NodeServer from "../../examples/http-server/NodeServer.js"

/** `server` listening on a port of loopback for the test's scope: the port. */
const listening = (server: Server) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
    ),
    () => (server.address() as AddressInfo).port
  )

describe("examples/http-server/NodeServer", () => {
  it.scopedLive("holds at most maxConnections connections, and bounds how long a request may take to arrive", () =>
    Effect.gen(function*() {
      const server = NodeServer.make({ maxConnections: 2 })
      const port = yield* listening(server)
      // Three clients connect and say nothing: the third is closed at once, the first two are held.
      const closed: Array<number> = []
      const someClosed = yield* Effect.makeLatch(false)
      const sockets = [0, 1, 2].map((i) => {
        const socket = Net.connect(port, "127.0.0.1")
        socket.on("close", () => {
          closed.push(i)
          someClosed.unsafeOpen()
        })
        socket.on("error", () => {})
        return socket
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => sockets.forEach((socket) => socket.destroy())))
      yield* someClosed.await
      expect(closed).toEqual([2])
      // Before, Node's defaults: a minute for the headers, five minutes for the whole request.
      expect([server.headersTimeout, server.requestTimeout]).toEqual([10_000, 30_000])
    }))

  it.scopedLive("tells a request's handler at once when its client goes away (what stops a generation nobody awaits)", () =>
    Effect.gen(function*() {
      const server = NodeServer.make()
      const closed = yield* Effect.makeLatch(false)
      let finished: boolean | undefined
      // A handler that would answer after 1.5 s; the client sends its whole request and goes at 200 ms.
      server.on("request", (_request, response) => {
        const timer = setTimeout(() => response.end("late"), 1_500)
        response.on("close", () => {
          clearTimeout(timer)
          finished = response.writableFinished
          closed.unsafeOpen()
        })
      })
      const port = yield* listening(server)
      const started = Date.now()
      const socket = Net.connect(
        port,
        "127.0.0.1",
        () =>
          socket.write(
            "POST /plots HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
          )
      )
      socket.on("error", () => {})
      setTimeout(() => socket.destroy(), 200)
      yield* closed.await
      // A server that let clients half-close (to answer them) heard of it only once its answer was written.
      expect([finished, Date.now() - started < 1_000]).toEqual([false, true])
    }))

  it.scopedLive("answers 408 once a request's headers are late, at its limit and not at Node's next look", () =>
    Effect.gen(function*() {
      const server = NodeServer.make({ headersTimeoutMillis: 300, requestTimeoutMillis: 600 })
      const port = yield* listening(server)
      const started = Date.now()
      // Headers begun and never ended.
      const answer = yield* Effect.async<string>((resume) => {
        const socket = Net.connect(port, "127.0.0.1", () => socket.write("GET / HTTP/1.1\r\nHost: x\r\n"))
        let received = ""
        socket.on("data", (chunk) => (received += chunk.toString()))
        socket.on("close", () => resume(Effect.succeed(received)))
        socket.on("error", () => {})
      })
      expect(answer).toMatch(/^HTTP\/1\.1 408 /)
      // Node looks every 30 s unless told otherwise: before, the 408 came after 30 s whatever the limit.
      expect(Date.now() - started).toBeLessThan(2_000)
    }))
})
