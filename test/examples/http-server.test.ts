/**
 * The embedding example for real: its HttpApi on a loopback port, both endpoints called over HTTP.
 */
import { describe, expect, it } from "@effect/vitest"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { ServerLive } from "../../examples/http-server.js"

const post = (url: string, body: unknown) =>
  Effect.promise(() => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }))

describe("examples/http-server", () => {
  it.scopedLive("serves POST /plots and POST /plots/stream", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(ServerLive(0))
      const url = HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)
      const request = { projectId: "lighthouse-keeper", userPrompt: "What happens at the Drowned Bell?", targetWordCount: 300 }

      const plot = yield* post(`${url}/plots`, request)
      expect(plot.status).toBe(200)
      const result = yield* Effect.promise(() => plot.json())
      expect(result.isTemplate).toBe(false)
      expect(result.metrics.modelUsed).toBe(result.model)

      const missing = yield* post(`${url}/plots`, { ...request, projectId: "no-such-novel" })
      expect(missing.status).toBe(404)
      expect((yield* Effect.promise(() => missing.json()))._tag).toBe("ProjectNotFoundError")
      const invalid = yield* post(`${url}/plots`, { ...request, targetWordCount: 5 })
      expect(invalid.status).toBe(400)

      const stream = yield* post(`${url}/plots/stream`, request)
      expect(stream.headers.get("content-type")).toContain("text/event-stream")
      const text = yield* Effect.promise(() => stream.text())
      const events = [...text.matchAll(/^event: (.+)\ndata: (.+)$/gm)].map((m) => ({ event: m[1]!, data: JSON.parse(m[2]!) }))
      const stages = events.filter((e) => e.event === "Progress").map((e) => e.data.stage)
      expect(stages).toEqual(["retrieving_context", "selecting_model", "building_prompt", "generating", "parsing"])
      expect(events.at(-1)?.event).toBe("completed")
      expect(events.at(-1)?.data.result.isTemplate).toBe(false)
    }), 60_000)
})
