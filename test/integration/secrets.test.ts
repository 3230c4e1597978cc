/**
 * Keys never leak: generations with keys set, through every kind of failure, at debug log level; the logs,
 * the errors (JSON, inspect, message), the events, the metrics and the spans are searched for the keys.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import { inspect } from "node:util"
import * as RetryPolicy from "../../src/RetryPolicy.js"
import { type FaultKind, faultKinds } from "../../src/simulator/Faults.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import * as OpenTelemetry from "../../src/Telemetry/OpenTelemetry.js"
import { engineOverSimulator } from "../utils/simulated.js"

const keys = { openai: "sk-proj-SECRETopenai0123456789abcdef", anthropic: "sk-ant-api03-SECRETanthropic0123456789" }
/** Distinctive pieces of the keys: none may appear anywhere, even in part. */
const fragments = ["SECRETopenai", "SECRETanthropic", "0123456789abcdef", "anthropic0123456789"]

const fastPolicy: RetryPolicy.Policy = {
  ...RetryPolicy.mapRules(RetryPolicy.defaults, (rule) => ({ ...rule, delay: "5 millis", jitter: 0 })),
  attemptTimeout: "1 second",
  deadline: "10 seconds"
}

describe("secrets", () => {
  it.scopedLive("appear in no log, error, event, metric or span, through every kind of failure", () => {
    const exporter = new InMemorySpanExporter()
    const logs: Array<string> = []
    const captured = Logger.make(({ annotations, cause, message }) => {
      logs.push(inspect({ message, cause, annotations: [...annotations] }, { depth: 8 }))
    })
    return Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const engine = yield* engineOverSimulator(keys, { retryPolicy: fastPolicy })
      const seen: Array<string> = []
      const kinds: ReadonlyArray<FaultKind> = faultKinds.filter((k) =>
        k !== "hang" && k !== "stall" && k !== "slow_first_token"
      )
      for (const provider of ["openai", "anthropic"] as const) {
        for (const kind of kinds) {
          // Each fault once, then answers, for this provider's key.
          yield* simulator.script(keys[provider], [kind])
          const request = { projectId: "novel", userPrompt: `What happens next? (${kind})`, provider }
          const plain = yield* Effect.either(engine.generate(request, { useFallback: false }))
          if (plain._tag === "Left") {
            seen.push(
              JSON.stringify(plain.left),
              inspect(plain.left, { depth: 8 }),
              plain.left.message,
              String(plain.left)
            )
          } else seen.push(JSON.stringify(plain.right))
          yield* simulator.script(keys[provider], [kind])
          yield* engine.generateStream(request, { useFallback: true }).pipe(
            Stream.runForEach((event) => Effect.sync(() => seen.push(JSON.stringify(event)))),
            Effect.catchAll((error) =>
              Effect.sync(() => seen.push(JSON.stringify(error), inspect(error, { depth: 8 }), error.message))
            )
          )
        }
      }
      const metrics = yield* Metric.snapshot
      seen.push(inspect(metrics, { depth: 8 }))
      seen.push(
        ...exporter.getFinishedSpans().map((span) =>
          JSON.stringify({ name: span.name, attributes: span.attributes, events: span.events })
        )
      )
      seen.push(...logs)
      expect(seen.length).toBeGreaterThan(100)
      expect(logs.some((line) => line.includes("Prompt"))).toBe(true)
      // Where a fragment shows, the 160 characters around it, so that a failure says where the leak is.
      const leaks = seen.flatMap((text) =>
        fragments.flatMap((fragment) => {
          const at = text.indexOf(fragment)
          return at === -1 ? [] : [text.slice(0, 160) + " ... " + text.slice(Math.max(0, at - 120), at + 40)]
        })
      )
      expect(leaks).toEqual([])
    }).pipe(
      Effect.provide(Layer.mergeAll(GatewaySimulator.layer({ apiKeys: keys }), NodeHttpClient.layerUndici)),
      Effect.provide(OpenTelemetry.layer(new SimpleSpanProcessor(exporter))),
      Effect.provide(Logger.replace(Logger.defaultLogger, captured)),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )
  }, 120_000)
})
