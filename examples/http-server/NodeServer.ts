/**
 * Node's HTTP server as the example server runs it, for clients it does not trust: bounded in how long a request may
 * take to arrive, in how many connections it holds, and in what it reads of a body nobody wanted; a request Node
 * cannot read gets the error envelope (`HttpErrors.answerClientErrors`).
 *
 * A client that half-closes its side once its request is sent gets no answer, as with Node's defaults: that end is
 * how a client that gives up is told from one that waits (a FIN is what `fetch` sends when aborted), and a generation
 * nobody waits for must stop spending the provider's tokens.
 */
import { createServer, type Server, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import * as HttpErrors from "./HttpErrors.js"

/**
 * @since 0.1.0
 */
export interface Options {
  /** Connections held at once; one more is closed as it opens (default 1,000). */
  readonly maxConnections?: number | undefined
  /** How long a request's headers may take to arrive (default 10 s; Node's is a minute). */
  readonly headersTimeoutMillis?: number | undefined
  /** How long a whole request, its body too, may take to arrive (default 30 s; Node's is five minutes). */
  readonly requestTimeoutMillis?: number | undefined
}

/** The default cap on connections: each may hold a body of up to the body limit while it arrives. */
export const defaultMaxConnections = 1_000

export const make = (options: Options = {}): Server => {
  const headersTimeout = options.headersTimeoutMillis ?? 10_000
  const server = createServer({
    headersTimeout,
    requestTimeout: options.requestTimeoutMillis ?? 30_000,
    // Node looks at the timeouts of the requests arriving every 30 s by default: a limit of 10 s came at 30-40.
    connectionsCheckingInterval: Math.min(1_000, Math.max(10, Math.floor(headersTimeout / 10))),
    // A request without `Host` (an HTTP/1.0 client) is served: Node's own answer to it was a bare 400, no body.
    requireHostHeader: false
  })
  server.maxConnections = options.maxConnections ?? defaultMaxConnections
  // Answered while its body is still coming and nobody reads it (an unknown route), a request's body would be read
  // on by Node to its end, however long the client sends, to keep the connection: the answer closes it instead.
  server.on("request", (request, response) => {
    const writeHead = response.writeHead
    response.writeHead = function(this: typeof response, ...args: Parameters<typeof writeHead>) {
      if (!request.complete && request.listenerCount("data") === 0) response.shouldKeepAlive = false
      return writeHead.apply(this, args)
    } as typeof writeHead
    tellClientGone(request.socket, response)
  })
  return HttpErrors.answerClientErrors(server)
}

/**
 * A request pipelined behind another on a connection its client then closes hears nothing from Node: its response,
 * queued behind the first, has no socket yet, and gets neither `close` nor `finish`. The app is told as Node tells
 * the first one, by the response's `close`; otherwise its generation ran on for nobody, and held its client's share
 * for good. A response that has its socket is Node's to tell.
 */
const tellClientGone = (socket: Socket, response: ServerResponse) => {
  const onClose = () => {
    if (response.socket === null && !response.writableEnded) response.emit("close")
  }
  socket.once("close", onClose)
  response.once("close", () => socket.off("close", onClose))
}
