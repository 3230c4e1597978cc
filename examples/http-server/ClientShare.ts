/**
 * A share of the server per client: at most `maxPerClient` generations at once from one address, waiting in the rate
 * limiter's queue or running; one more is answered 429 `too_many_requests` at once. Without it, one client that sent
 * 40 at once filled the limiter's queue, and another client's single request waited behind all of them (28.6 s).
 * The share is held for as long as the request's scope: until its answer is written, its stream too, or its client
 * leaves.
 */
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as HttpErrors from "./HttpErrors.js"

/** The default share: enough for a writer's tabs and a batch of a few, not for a flood. */
export const defaultMaxPerClient = 8

export interface ClientShare {
  /** A place for the request's client, held until the request's scope closes; `too_many_requests` when it has none. */
  readonly enter: (
    request: HttpServerRequest.HttpServerRequest
  ) => Effect.Effect<void, HttpErrors.HttpError, Scope.Scope>
}

export const make = (maxPerClient: number): ClientShare => {
  const inFlight = new Map<string, number>()
  const leave = (client: string) =>
    Effect.sync(() => {
      const left = inFlight.get(client)! - 1
      if (left === 0) inFlight.delete(client)
      else inFlight.set(client, left)
    })
  return {
    enter: (request) => {
      // Behind a proxy every request has the proxy's address: set the share to what the proxy lets through.
      const client = Option.getOrElse(request.remoteAddress, () => "unknown")
      return Effect.acquireRelease(
        Effect.suspend(() => {
          const held = inFlight.get(client) ?? 0
          if (held >= maxPerClient) return Effect.fail(HttpErrors.HttpError.tooManyRequests(maxPerClient))
          inFlight.set(client, held + 1)
          return Effect.void
        }),
        () => leave(client)
      )
    }
  }
}
