/**
 * A key is redacted because it is the configured key, not because of its format: a gateway that quotes an
 * Azure-style key (32 hex digits, no `sk-` prefix) back in its error bodies, whole and in part, never gets it into
 * an error, an event or a log.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { inspect } from "node:util"
import * as Alerts from "../../src/Alerts.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import { sampleProject } from "../utils/fixtures.js"

const azureKey = "3f8a9c1d2e4b5a6978c0d1e2f3a4b5c6"

/** A gateway that answers every request 401, quoting the key it was sent, whole and as its first 12 characters. */
const quotingGateway = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
    const server = createServer((request, response) => {
      const presented = String(request.headers["authorization"] ?? "").replace(/^Bearer\s+/i, "")
      response.writeHead(401, { "content-type": "application/json" })
      response.end(JSON.stringify({
        error: {
          message: `Access denied for key ${presented} (key prefix ${presented.slice(0, 12)}).`,
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key"
        }
      }))
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
        close: () => server.close()
      })))
  }),
  (gateway) => Effect.sync(gateway.close)
)

describe("redaction of the configured keys", () => {
  it.scopedLive("a key in any format, quoted back by a gateway, reaches no error, event or log", () => {
    const logs: Array<string> = []
    const captured = Logger.make(({ annotations, cause, message }) => {
      logs.push(inspect({ message, cause, annotations: [...annotations] }, { depth: 8 }))
    })
    return Effect.gen(function*() {
      const gateway = yield* quotingGateway
      const providers = yield* Providers.make({ openai: { apiKey: Redacted.make(azureKey), baseUrl: gateway.url } })
      const engine = yield* PlotGeneration.make().pipe(
        Effect.provideService(Providers.Providers, providers),
        Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
        Effect.provide(ProviderRateLimiter.layerUnlimited),
        Effect.provide(Alerts.layerDisabled)
      )
      const request = { projectId: "novel", userPrompt: "What happens next?", provider: "openai" as const }
      const seen: Array<string> = []
      const error = yield* Effect.flip(engine.generate(request))
      expect(error._tag).toBe("AuthError")
      seen.push(JSON.stringify(error), inspect(error, { depth: 8 }), error.message, String(error))
      yield* engine.generateStream(request).pipe(
        Stream.runForEach((event) => Effect.sync(() => seen.push(JSON.stringify(event)))),
        Effect.catchAll((failure) => Effect.sync(() => seen.push(JSON.stringify(failure), failure.message)))
      )
      // The gateway did quote it: the detail keeps the sentence, with the key taken out.
      expect(error.message).toContain("Access denied for key [redacted] (key prefix [redacted])")
      const everything = [...seen, ...logs].join("\n")
      for (const fragment of [azureKey, azureKey.slice(0, 12), azureKey.slice(-12)]) {
        expect(everything).not.toContain(fragment)
      }
    }).pipe(
      Effect.provide(NodeHttpClient.layerUndici),
      Effect.provide(Logger.replace(Logger.defaultLogger, captured)),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )
  })
})
