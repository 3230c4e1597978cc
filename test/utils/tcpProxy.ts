/**
 * A TCP proxy on loopback in front of a real server, that a test can cut (every connection dropped, nothing
 * listening) and restore on the same port: Redis going away and coming back, mid-run.
 */
import * as Effect from "effect/Effect"
import * as Net from "node:net"

export interface TcpProxy {
  readonly port: number
  /** How many connections it has accepted so far. */
  readonly accepted: () => number
  /** Drops every connection and stops listening. */
  readonly cut: Effect.Effect<void>
  /** Listens again on the same port. */
  readonly restore: Effect.Effect<void>
}

const listen = (server: Net.Server, port: number) =>
  Effect.async<number>((resume) => {
    server.listen(port, "127.0.0.1", () => resume(Effect.succeed((server.address() as Net.AddressInfo).port)))
  })

/** A proxy to `target`, closed with the scope. */
export const tcpProxy = (target: { readonly host: string; readonly port: number }) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const sockets = new Set<Net.Socket>()
      let accepted = 0
      const server = Net.createServer((client) => {
        accepted++
        const upstream = Net.connect(target.port, target.host)
        for (const socket of [client, upstream]) {
          sockets.add(socket)
          socket.on("error", () => {})
          socket.on("close", () => sockets.delete(socket))
        }
        client.pipe(upstream).pipe(client)
      })
      const port = yield* listen(server, 0)
      const cut = Effect.async<void>((resume) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resume(Effect.void))
      })
      return { server, proxy: { port, accepted: () => accepted, cut, restore: Effect.asVoid(listen(server, port)) } }
    }),
    ({ server }) => Effect.sync(() => server.close())
  ).pipe(Effect.map(({ proxy }): TcpProxy => proxy))
