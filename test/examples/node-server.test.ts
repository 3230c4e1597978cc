/**
 * The example server's Node server: bounded for clients it does not trust.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import * as NodeServer from "../../examples/http-server/NodeServer.js"

describe("examples/http-server/NodeServer", () => {
  it.scopedLive("holds at most maxConnections connections, and bounds how long a request may take to arrive", () =>
    Effect.gen(function*() {
      const server = NodeServer.make({ maxConnections: 2 })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
      )
      const { port } = server.address() as AddressInfo
      // Three clients connect and say nothing: the third is closed at once, the first two are held.
      const closed: Array<number> = []
      const sockets = [0, 1, 2].map((i) => {
        const socket = Net.connect(port, "127.0.0.1")
        socket.on("close", () => closed.push(i))
        socket.on("error", () => {})
        return socket
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => sockets.forEach((socket) => socket.destroy())))
      yield* Effect.sleep("300 millis")
      expect(closed).toEqual([2])
      // Before, Node's defaults: a minute for the headers, five minutes for the whole request.
      expect([server.headersTimeout, server.requestTimeout]).toEqual([10_000, 30_000])
    }))
})
