/**
 * Node's HTTP server as the example server runs it, for clients it does not trust: bounded in how long a request may
 * take to arrive, in how many connections it holds, and in what it reads of a body nobody wanted; a client that
 * half-closes its side once its request is sent still gets its answer; a request Node cannot read gets the error
 * envelope (`HttpErrors.answerClientErrors`).
 */
import { createServer, type Server } from "node:http"
import * as HttpErrors from "./HttpErrors.js"

/**
 * @since 0.1.0
 */
export interface Options {
  /** Connections held at once; one more is closed as it opens (default 1,000). */
  readonly maxConnections?: number | undefined
}

/** How long a request's headers may take to arrive (Node's default is a minute). */
export const headersTimeoutMillis = 10_000

/** How long a whole request, its body too, may take to arrive (Node's default is five minutes). */
export const requestTimeoutMillis = 30_000

/** The default cap on connections: each may hold a body of up to the body limit while it arrives. */
export const defaultMaxConnections = 1_000

export const make = (options: Options = {}): Server => {
  // A request without `Host` (an HTTP/1.0 client) is served: Node's own answer to it was a bare 400, with no body.
  const server = createServer({
    headersTimeout: headersTimeoutMillis,
    requestTimeout: requestTimeoutMillis,
    requireHostHeader: false
  }) // Node ends a connection whose client half-closed it, dropping the request it has just read (curl --data with
   // a shut-down write side, a proxy that closes early): answered first, then ended.
  ;(server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true
  server.maxConnections = options.maxConnections ?? defaultMaxConnections
  // Answered while its body is still coming and nobody reads it (an unknown route), a request's body would be read
  // on by Node to its end, however long the client sends, to keep the connection: the answer closes it instead.
  server.on("request", (request, response) => {
    const writeHead = response.writeHead
    response.writeHead = function(this: typeof response, ...args: Parameters<typeof writeHead>) {
      if (!request.complete && request.listenerCount("data") === 0) response.shouldKeepAlive = false
      return writeHead.apply(this, args)
    } as typeof writeHead
  })
  return HttpErrors.answerClientErrors(server)
}
