/**
 * The example server under a crowd: 200 requests at once, far beyond the default quota (60 requests and 90,000
 * tokens a minute per model, 5 at a time). Each gets an answer within a minute, a plot or a 429 with Retry-After
 * saying when to come back; none is kept in a queue for minutes and then given a template.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import { ServerLive } from "../../examples/http-server.js"

describe("examples/http-server under load", () => {
  it.scopedLive(
    "200 concurrent requests: each a plot or a 429 with Retry-After, within a minute",
    () =>
      Effect.gen(function*() {
        // 200 clients, all from the loopback address: one address's share (8 by default) would refuse most at once.
        const context = yield* Layer.build(ServerLive(0, { maxRequestsPerClient: 1_000 }))
        const url = HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)
        const body = JSON.stringify({ projectId: "lighthouse-keeper", userPrompt: "What happens at the Drowned Bell?" })
        const answers = yield* Effect.promise(() =>
          Promise.all(Array.from({ length: 200 }, async () => {
            const startedAt = Date.now()
            const response = await fetch(`${url}/plots`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body
            })
            const payload = await response.json()
            return {
              status: response.status,
              retryAfter: response.headers.get("retry-after"),
              payload,
              seconds: (Date.now() - startedAt) / 1000
            }
          }))
        )
        const plots = answers.filter((a) => a.status === 200)
        const refused = answers.filter((a) => a.status === 429)
        expect(plots.length + refused.length).toBe(200)
        expect(plots.length).toBeGreaterThan(0)
        expect(refused.length).toBeGreaterThan(0)
        expect(plots.every((a) => a.payload.isTemplate === false)).toBe(true)
        for (const answer of refused) {
          expect(Number(answer.retryAfter)).toBeGreaterThan(0)
          expect(answer.payload.error.type).toBe("rate_limit")
        }
        expect(Math.max(...answers.map((a) => a.seconds))).toBeLessThan(60)
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none))),
    120_000
  )
})
