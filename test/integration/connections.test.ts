/**
 * The clients read a stream to the body's end, as the official SDKs do, so that its connection goes back to the pool
 * for the next call. Ending the stream at the provider's last event aborted the request whenever the body's end came
 * in a later network piece (as it may behind a proxy): the connection was dropped and the next call opened another,
 * in production a TLS handshake per stream. Real clients and undici over loopback, against a server that ends each
 * body 50 ms after its last event and counts the connections and the responses cut short.
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import type { ProviderName } from "../../src/Domain.js"
import * as Providers from "../../src/Providers.js"
import * as AnthropicWire from "../../src/simulator/AnthropicWire.js"
import * as OpenAiWire from "../../src/simulator/OpenAiWire.js"
import { encodeSse } from "../../src/simulator/Wire.js"

const text = "Mara Quinn climbs to the lamp room and counts the steps."

const reply = {
  _tag: "Reply" as const,
  text,
  object: undefined,
  inputTokens: 10,
  outputTokens: 12,
  reasoningTokens: 0,
  stopReason: "end" as const
}

/** The events of a streamed reply of `text` to `body`, in the wire of `provider`. */
const eventsOf = (provider: ProviderName, body: unknown) => {
  if (provider === "openai") {
    const request = OpenAiWire.parseRequest(body)
    if (!("prompt" in request)) throw new Error("not a Responses API request")
    return OpenAiWire.streamEvents(request, reply, { responseId: "resp_1", messageId: "msg_1", createdAt: 0 })
  }
  const request = AnthropicWire.parseRequest(body)
  if (!("prompt" in request)) throw new Error("not a Messages API request")
  return AnthropicWire.streamEvents(request, reply, { messageId: "msg_1", toolUseId: "toolu_1" })
}

/** A server that streams every event at once and ends the body 50 ms later; it counts what it saw. */
const lateEndServer = (provider: ProviderName) =>
  Effect.acquireRelease(
    Effect.async<{
      readonly url: string
      readonly connections: () => number
      readonly cutShort: () => number
      readonly close: () => void
    }>((resume) => {
      let connections = 0
      let cutShort = 0
      const server = createServer((request, response) => {
        let body = ""
        request.on("data", (data: Buffer) => (body += data.toString()))
        request.on("end", () => {
          response.writeHead(200, { "content-type": "text/event-stream" })
          response.write(eventsOf(provider, JSON.parse(body)).map(encodeSse).join(""))
          const ending = setTimeout(() => response.end(), 50)
          response.on("close", () => {
            if (!response.writableFinished) cutShort++
            clearTimeout(ending)
          })
        })
      })
      server.on("connection", () => connections++)
      server.listen(0, "127.0.0.1", () => {
        const root = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
        resume(Effect.succeed({
          url: provider === "openai" ? `${root}/v1` : root,
          connections: () => connections,
          cutShort: () => cutShort,
          close: () => server.close()
        }))
      })
    }),
    (server) => Effect.sync(server.close)
  )

for (const provider of ["openai", "anthropic"] as const) {
  it.scopedLive(`${provider}: six streams one after another, each read to its end, over two connections`, () =>
    Effect.gen(function*() {
      const server = yield* lateEndServer(provider)
      const providers = yield* Providers.make({
        [provider]: { apiKey: Redacted.make("sk-test-0123456789"), baseUrl: server.url }
      })
      const model = yield* providers.languageModel(
        provider,
        provider === "openai" ? "gpt-4.1-mini" : "claude-haiku-4-5",
        { maxOutputTokens: 400, temperature: undefined }
      )
      for (let i = 0; i < 6; i++) {
        const parts = yield* LanguageModel.streamText({ prompt: `Tell it (${i})` }).pipe(
          Stream.runCollect,
          Effect.provideService(LanguageModel.LanguageModel, model)
        )
        const written = [...parts].flatMap((part) => (part.type === "text-delta" ? [part.delta] : [])).join("")
        expect(written).toBe(text)
        expect([...parts].at(-1)?.type).toBe("finish")
      }
      // None cut short (ended at the last event: five of six, each on a connection of its own). Two connections, not
      // one: undici frees a socket a moment after its body's end, so streams back to back take turns on two.
      expect(server.cutShort()).toBe(0)
      expect(server.connections()).toBeLessThanOrEqual(2)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)))
}
