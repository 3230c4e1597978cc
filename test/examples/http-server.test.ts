/**
 * The embedding example for real: its HttpApi on a loopback port, both endpoints called over HTTP.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { ServerLive } from "../../examples/http-server.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"

const post = (url: string, body: unknown) =>
  Effect.promise(() =>
    fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
  )

describe("examples/http-server", () => {
  it.scopedLive("serves POST /plots and POST /plots/stream", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(ServerLive(0))
      const url = HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)
      const request = {
        projectId: "lighthouse-keeper",
        userPrompt: "What happens at the Drowned Bell?",
        targetWordCount: 300
      }

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
      const unserved = yield* post(`${url}/plots`, { ...request, provider: "openai", model: "model-that-is-not-there" })
      expect(unserved.status).toBe(502)
      expect((yield* Effect.promise(() => unserved.json()))._tag).toBe("ModelNotFoundError")

      const stream = yield* post(`${url}/plots/stream`, request)
      expect(stream.headers.get("content-type")).toContain("text/event-stream")
      const text = yield* Effect.promise(() => stream.text())
      const events = [...text.matchAll(/^event: (.+)\ndata: (.+)$/gm)].map((m) => ({
        event: m[1]!,
        data: JSON.parse(m[2]!)
      }))
      const stages = events.filter((e) => e.event === "Progress").map((e) => e.data.stage)
      expect(stages).toEqual(["retrieving_context", "selecting_model", "building_prompt", "generating", "parsing"])
      expect(events.at(-1)?.event).toBe("completed")
      expect(events.at(-1)?.data.result.isTemplate).toBe(false)
    }), 60_000)

  it.scopedLive(
    "never prints a key: not in its answers, not in its logs, whatever the provider answers",
    () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const openaiKey = "sk-proj-server-secret-8c1f2e"
        const anthropicKey = "sk-ant-api03-server-secret-77d1"
        const faults = [
          "auth",
          { kind: "rate_limit", retryAfterMs: 20 },
          "insufficient_quota",
          "server_error",
          "invalid_request",
          "context_length",
          "reset"
        ] as const
        yield* simulator.script(openaiKey, faults.flatMap((fault) => [fault, fault, fault, fault]))
        yield* simulator.script(anthropicKey, faults.flatMap((fault) => [fault, fault, fault, fault]))
        const lines: Array<string> = []
        const capture = Logger.replace(
          Logger.defaultLogger,
          Logger.make(({ annotations, message }) =>
            lines.push(JSON.stringify({ message, annotations: [...annotations] }))
          )
        )
        const config = ConfigProvider.fromMap(
          new Map([
            ["OPENAI_API_KEY", openaiKey],
            ["OPENAI_BASE_URL", simulator.openaiBaseUrl],
            ["ANTHROPIC_API_KEY", anthropicKey],
            ["ANTHROPIC_BASE_URL", simulator.anthropicBaseUrl],
            // Short budgets: the point is what is printed, not how long it retries.
            ["PLOT_ENGINE_MAX_ATTEMPTS", "2"],
            ["PLOT_ENGINE_MAX_RETRY_DELAY", "50 millis"],
            ["PLOT_ENGINE_DEADLINE", "1500 millis"]
          ])
        )
        const context = yield* Layer.build(
          ServerLive(0).pipe(
            Layer.provide(
              Layer.mergeAll(capture, Logger.minimumLogLevel(LogLevel.Debug), Layer.setConfigProvider(config))
            )
          )
        )
        const url = HttpServer.formatAddress(Context.get(context, HttpServer.HttpServer).address)
        const bodies: Array<string> = []
        for (const provider of ["openai", "anthropic"]) {
          for (let i = 0; i < faults.length; i++) {
            for (const path of ["/plots", "/plots/stream"]) {
              const response = yield* post(`${url}${path}`, {
                projectId: "lighthouse-keeper",
                userPrompt: `Attempt ${i}`,
                provider
              })
              bodies.push(yield* Effect.promise(() => response.text()))
            }
          }
        }
        expect((yield* simulator.stats).requests).toBeGreaterThan(20)
        expect(lines.length).toBeGreaterThan(0)
        const everything = [...bodies, ...lines].join("\n")
        for (const key of [openaiKey, anthropicKey]) {
          for (const fragment of [key, key.slice(-12), key.slice(0, 16)]) expect(everything).not.toContain(fragment)
        }
      }).pipe(Effect.provide(GatewaySimulator.layer())),
    120_000
  )
})
