/**
 * A whole SSE stream written in one piece (as a fast provider or a buffering proxy delivers it) arrives whole,
 * characters split across the network's pieces included; the patched SSE parser reads it in one pass
 * (`test/patches.test.ts` pins its cost).
 */
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as Providers from "../../src/Providers.js"
import * as OpenAiWire from "../../src/simulator/OpenAiWire.js"
import { encodeSse } from "../../src/simulator/Wire.js"

/** Multi-byte characters throughout, so that the network's cuts land inside them. */
const text = Array.from({ length: 3_000 }, (_, i) => `Maña ${i} 🌊 ✓ `).join("")

/** A server that writes a Responses API stream of `text` with one `write`. */
const oneChunkServer = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly close: () => void }>((resume) => {
    const server = createServer((request, response) => {
      let body = ""
      request.on("data", (data: Buffer) => (body += data.toString()))
      request.on("end", () => {
        const parsed = OpenAiWire.parseRequest(JSON.parse(body))
        if (!("prompt" in parsed)) return response.writeHead(400).end()
        const reply = {
          _tag: "Reply" as const,
          text,
          object: undefined,
          inputTokens: 10,
          outputTokens: 3_000,
          reasoningTokens: 0,
          stopReason: "end" as const
        }
        const events = OpenAiWire.streamEvents(parsed, reply, {
          responseId: "resp_1",
          messageId: "msg_1",
          createdAt: 0
        })
        response.writeHead(200, { "content-type": "text/event-stream" })
        response.end(events.map(encodeSse).join(""))
      })
    })
    server.listen(
      0,
      "127.0.0.1",
      () =>
        resume(Effect.succeed({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
          close: () => server.close()
        }))
    )
  }),
  (server) => Effect.sync(server.close)
)

it.scopedLive(
  "a stream written in one piece arrives whole, multi-byte characters included",
  () =>
    Effect.gen(function*() {
      const server = yield* oneChunkServer
      const providers = yield* Providers.make({
        openai: { apiKey: Redacted.make("sk-chunks-0123456789"), baseUrl: server.url }
      })
      const model = yield* providers.languageModel("openai", "gpt-4.1-mini", {
        maxOutputTokens: 4_000,
        temperature: undefined
      })
      let received = ""
      yield* LanguageModel.streamText({ prompt: "Tell it all" }).pipe(
        Stream.runForEach((part) => Effect.sync(() => (received += part.type === "text-delta" ? part.delta : ""))),
        Effect.provideService(LanguageModel.LanguageModel, model)
      )
      expect(received.length).toBe(text.length)
      expect(received).toBe(text)
    }).pipe(Effect.provide(NodeHttpClient.layerUndici)),
  30_000
)
