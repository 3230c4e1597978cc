/**
 * A TCP front end on loopback before a real Redis, for a test to play what a production Redis does: `pass` pipes
 * the bytes (each reply chunk `delay` ms late: a Redis far away), `readonly` answers every write with Redis' own
 * `-READONLY` reply, as a replica does during a failover (reads answered empty), `silent` answers nothing (a Redis
 * that hangs). `dropAll` closes the connections (clients reconnect, in the mode then in force).
 */
import * as Effect from "effect/Effect"
import * as Net from "node:net"

export interface RedisFrontEnd {
  readonly port: number
  readonly state: { mode: "pass" | "readonly" | "silent"; delay: number }
  readonly dropAll: Effect.Effect<void>
}

/** Answers each whole RESP command in `buffer` as a read-only replica; returns what is left of it. */
const answerAsReplica = (client: Net.Socket, buffer: string): string => {
  for (;;) {
    const header = /^\*(\d+)\r\n/.exec(buffer)
    if (header === null) return buffer
    let at = header[0].length
    const args: Array<string> = []
    for (let k = 0; k < Number(header[1]); k++) {
      const length = /^\$(\d+)\r\n/.exec(buffer.slice(at))
      if (length === null || buffer.length < at + length[0].length + Number(length[1]) + 2) return buffer
      args.push(buffer.slice(at + length[0].length, at + length[0].length + Number(length[1])))
      at += length[0].length + Number(length[1]) + 2
    }
    buffer = buffer.slice(at)
    const command = args[0]!.toUpperCase()
    if (command === "INFO") {
      const info = "# Server\r\nredis_version:7.0.0\r\nloading:0\r\n"
      client.write(`$${info.length}\r\n${info}\r\n`)
    } else if (command === "SMEMBERS" || command === "HGETALL") client.write("*0\r\n")
    else client.write("-READONLY You can't write against a read only replica.\r\n")
  }
}

export const redisFrontEnd = (redisPort: number) =>
  Effect.acquireRelease(
    Effect.async<RedisFrontEnd & { readonly server: Net.Server; readonly sockets: Set<Net.Socket> }>((resume) => {
      const state: RedisFrontEnd["state"] = { mode: "pass", delay: 0 }
      const sockets = new Set<Net.Socket>()
      const track = (socket: Net.Socket) => {
        sockets.add(socket)
        socket.on("error", () => {})
        socket.on("close", () => sockets.delete(socket))
      }
      const server = Net.createServer((client) => {
        track(client)
        if (state.mode === "silent") return
        if (state.mode === "readonly") {
          let buffer = ""
          client.on("data", (data) => (buffer = answerAsReplica(client, buffer + data.toString("latin1"))))
          return
        }
        const upstream = Net.connect(redisPort, "127.0.0.1")
        track(upstream)
        client.pipe(upstream)
        upstream.on("data", (data) => {
          if (state.delay === 0) client.write(data)
          else setTimeout(() => client.write(data), state.delay)
        })
      })
      const dropAll = Effect.sync(() => {
        for (const socket of sockets) socket.destroy()
      })
      server.listen(0, "127.0.0.1", () =>
        resume(Effect.succeed({ server, sockets, port: (server.address() as Net.AddressInfo).port, state, dropAll })))
    }),
    ({ server, sockets }) =>
      Effect.sync(() => {
        for (const socket of sockets) {
          socket.destroy()
        }
        server.close()
      })
  )
