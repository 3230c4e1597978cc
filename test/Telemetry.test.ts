/**
 * The metrics after scripted generations: exact counts, token sums and cost.
 */
import { describe, expect, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Random from "effect/Random"
import * as TestClock from "effect/TestClock"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as Alerts from "../src/Alerts.js"
import * as PlotEngine from "../src/PlotEngine.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as Telemetry from "../src/Telemetry.js"
import * as OpenTelemetry from "../src/Telemetry/OpenTelemetry.js"
import { type Answer, fail, httpError, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"

const rateLimited = fail(
  httpError(429, {
    error: { message: "Rate limit reached", type: "requests", param: null, code: "rate_limit_exceeded" }
  }, { "retry-after-ms": "1000" })
)
const serverError = fail(httpError(500, { error: { message: "boom", type: "server_error", param: null, code: null } }))
const unauthorized = fail(
  httpError(401, { error: { message: "bad key", type: "invalid_request_error", param: null, code: "invalid_api_key" } })
)

const request = { projectId: "novel", userPrompt: "What happens next?", provider: "openai" as const, model: "gpt-4.1" }

const engine = (answers: ReadonlyArray<Answer>) =>
  PlotGeneration.layer().pipe(
    Layer.provide(Providers.layerModels({ openai: scripted(answers) })),
    Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
    Layer.provideMerge(Alerts.layer()),
    Layer.provide(ProviderRateLimiter.layerUnlimited)
  )

const value = (metric: Metric.Metric.Counter<number>, tags: Record<string, string>) =>
  Effect.map(
    Metric.value(Object.entries(tags).reduce((m, [k, v]) => Metric.tagged(m, k, v), metric)),
    (state) => state.count
  )

const settle = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust("10 minutes")
    return yield* Fiber.join(fiber)
  })

describe("Telemetry", () => {
  it.effect("counts a success with two retries, a template and a failure, with their tokens and cost", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const model = { provider: "openai", model: "gpt-4.1" }
      // 1. Two 429s, then a success reporting 1,000 tokens in and 500 out.
      yield* settle(engineService.generate(request))
      // 2. Server errors until the template.
      yield* settle(engineService.generate(request))
      // 3. A wrong key: a typed failure.
      yield* Effect.flip(engineService.generate(request))

      expect(yield* value(Telemetry.generations, { ...model, outcome: "success" })).toBe(1)
      expect(yield* value(Telemetry.generations, { provider: "template", model: "template", outcome: "template" }))
        .toBe(1)
      expect(yield* value(Telemetry.generations, { ...model, outcome: "failure" })).toBe(1)
      expect(yield* value(Telemetry.inputTokens, model)).toBe(1_000)
      expect(yield* value(Telemetry.outputTokens, model)).toBe(500)
      expect(yield* value(Telemetry.retries, model)).toBe(2)
      expect(yield* value(Telemetry.retries, { provider: "template", model: "template" })).toBe(3)
      expect(yield* value(Telemetry.errors, { error_type: "rate_limit", ...model })).toBe(2)
      expect(yield* value(Telemetry.errors, { error_type: "server_error", ...model })).toBe(4)
      expect(yield* value(Telemetry.errors, { error_type: "auth_error", ...model })).toBe(1)
      expect((yield* Metric.value(Telemetry.templateFallbacks)).count).toBe(1)
      // Every call sent, by its deployment (the provider's own, without a deployments file) and how it ended:
      // 3 + 4 + 1 = 8 calls.
      const calls = { ...model, deployment: "openai" }
      expect(yield* value(Telemetry.providerCalls, { ...calls, outcome: "success" })).toBe(1)
      expect(yield* value(Telemetry.providerCalls, { ...calls, outcome: "rate_limit" })).toBe(2)
      expect(yield* value(Telemetry.providerCalls, { ...calls, outcome: "server_error" })).toBe(4)
      expect(yield* value(Telemetry.providerCalls, { ...calls, outcome: "auth_error" })).toBe(1)
      // gpt-4.1: $2 per million in, $8 per million out.
      expect(yield* value(Telemetry.costUsd, model)).toBeCloseTo(0.006, 10)
      const duration = yield* Metric.value(
        Metric.tagged(Metric.tagged(Telemetry.generationDuration, "provider", "openai"), "model", "gpt-4.1")
      )
      expect(duration.count).toBe(1)
      // 1.5 s and 2.5 s of backoff (jitter pinned at 0.5).
      expect(duration.sum).toBe(4_000)

      // The alerts saw them too. Ten virtual minutes passed between generations, so only the failure is
      // inside the 5-minute windows now: an error rate of 1 of 1.
      const alerts = yield* Alerts.Alerts
      yield* TestClock.adjust("1 millis")
      expect(yield* alerts.active).toEqual(["error_rate"])
    }).pipe(
      Effect.withRandom(Random.fixed([0.5])),
      Effect.provide(engine([
        rateLimited,
        rateLimited,
        text(sampleOutlineJson, { inputTokens: 1_000, outputTokens: 500 }),
        serverError,
        serverError,
        serverError,
        serverError,
        unauthorized
      ]))
    ))
})

describe("OpenTelemetry.layer", () => {
  it.effect("exports a span per generation and per attempt, with the GenAI attributes", () => {
    const exporter = new InMemorySpanExporter()
    return Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      yield* engineService.generate(request)
      const spans = exporter.getFinishedSpans()
      const names = spans.map((s) => s.name)
      expect(names).toContain("PlotGeneration.generate")
      const attempt = spans.find((s) => s.name === "PlotGeneration.attempt")
      expect(attempt?.attributes).toMatchObject({
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4.1",
        "gen_ai.usage.input_tokens": 1_000,
        "gen_ai.usage.output_tokens": 500
      })
      expect(typeof attempt?.attributes["gen_ai.request.max_tokens"]).toBe("number")
      // The attempt is a child of the generation.
      const generation = spans.find((s) => s.name === "PlotGeneration.generate")
      expect(attempt?.parentSpanContext?.spanId).toBe(generation?.spanContext().spanId)
    }).pipe(
      Effect.provide(engine([text(sampleOutlineJson, { inputTokens: 1_000, outputTokens: 500 })])),
      Effect.provide(OpenTelemetry.layer(new SimpleSpanProcessor(exporter)))
    )
  })
})

/** An OTLP/HTTP collector on a loopback port: what it received, by path, as JSON. */
const loopbackCollector = Effect.acquireRelease(
  Effect.async<
    { readonly url: string; readonly received: Array<{ path: string; body: any }>; readonly close: () => void }
  >(
    (resume) => {
      const received: Array<{ path: string; body: any }> = []
      const server = createServer((request, response) => {
        const chunks: Array<Buffer> = []
        request.on("data", (chunk: Buffer) => chunks.push(chunk))
        request.on("end", () => {
          received.push({ path: request.url ?? "", body: JSON.parse(Buffer.concat(chunks).toString("utf8")) })
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}/`, received, close: () => server.close() }))
      })
    }
  ),
  (collector) => Effect.sync(collector.close)
)

describe("OpenTelemetry.layerOtlp", () => {
  // A real collector over loopback: real time, bounded by the reader's export on shutdown.
  it.scopedLive("exports the metrics beside the spans, to {endpoint}/v1/metrics, once more when it closes", () =>
    Effect.gen(function*() {
      const collector = yield* loopbackCollector
      const counted = Telemetry.generations.pipe(
        Metric.tagged("outcome", "success"),
        Metric.tagged("provider", "otlp-test"),
        Metric.tagged("model", "m")
      )
      yield* Effect.scoped(Effect.gen(function*() {
        // An interval far away: the export seen is the one made when the layer closes.
        yield* Layer.build(OpenTelemetry.layerOtlp(collector.url, { metricsInterval: "1 hour" }))
        yield* Metric.incrementBy(counted, 2)
      }))
      const exports = collector.received.filter((r) => r.path === "/v1/metrics")
      expect(exports).toHaveLength(1)
      const metrics = exports[0]!.body.resourceMetrics.flatMap((r: any) => r.scopeMetrics)
        .flatMap((s: any) => s.metrics)
      const generations = metrics.find((m: any) => m.name === "plot_engine_generations_total")
      expect(generations.sum.isMonotonic).toBe(true)
      const point = generations.sum.dataPoints.find((p: any) =>
        p.attributes.some((a: any) => a.key === "provider" && a.value.stringValue === "otlp-test")
      )
      expect(point.asDouble).toBe(2)
      const service = exports[0]!.body.resourceMetrics[0].resource.attributes.find((a: any) => a.key === "service.name")
      expect(service.value.stringValue).toBe("plot-engine")
    }))
})

describe("OpenTelemetry.layerOtlp, its endpoint down", () => {
  it.scopedLive("says once that the export failed, as a warning (OpenTelemetry's exporters fail silently)", () =>
    Effect.gen(function*() {
      // A port nothing listens on: the connection is refused.
      const port = yield* Effect.async<number>((resume) => {
        const server = createServer().listen(0, "127.0.0.1", () => {
          const { port } = server.address() as AddressInfo
          server.close(() => resume(Effect.succeed(port)))
        })
      })
      const lines: Array<string> = []
      const captured = Logger.replace(
        Logger.defaultLogger,
        Logger.make(({ message }) => lines.push(String(Array.isArray(message) ? message.join(" ") : message)))
      )
      yield* Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(OpenTelemetry.layerOtlp(`http://127.0.0.1:${port}`, { metricsInterval: "1 hour" }))
        yield* Metric.incrementBy(Telemetry.generations.pipe(Metric.tagged("provider", "otlp-down")), 1)
      })).pipe(Effect.provide(captured))
      // Logged as the export made on close failed, before the layer's scope had closed.
      // Before, nothing was said: an export to a wrong or dead endpoint looked like one that worked.
      expect(lines.filter((line) => line.startsWith("OpenTelemetry: metrics could not be exported"))).toHaveLength(1)
    }))
})

describe("PlotEngine.layerOtlpConfig", () => {
  it.scoped("refuses an OTEL_EXPORTER_OTLP_ENDPOINT that is not an http(s) URL, naming it", () =>
    Effect.gen(function*() {
      // Before, taken: the exporter threw "Could not parse user-provided export URL" with a stack trace.
      const refused = yield* Effect.flip(
        Layer.build(PlotEngine.layerOtlpConfig).pipe(
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["OTEL_EXPORTER_OTLP_ENDPOINT", "notaurl"]])))
        )
      )
      expect(String(refused)).toContain("Invalid data at OTEL_EXPORTER_OTLP_ENDPOINT")
      // Set but empty: not set (OpenTelemetry's own rule for its variables), so nothing is exported.
      yield* Layer.build(PlotEngine.layerOtlpConfig).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["OTEL_EXPORTER_OTLP_ENDPOINT", ""]])))
      )
    }))
})

describe("Telemetry with a model per request", () => {
  // A request may pin any model name: every tag set is a metric kept for the process's life (and a Prometheus
  // series), so past the first 256 models seen, the rest are counted as `other`.
  it.effect("counts the models past the first 256 seen as `other`; the catalog's keep their names", () =>
    Effect.gen(function*() {
      for (let i = 0; i < 300; i++) {
        yield* Telemetry.recordProviderCall({ provider: "openai", model: `flood-${i}` }, Exit.void)
      }
      yield* Telemetry.recordProviderCall({ provider: "anthropic", model: "claude-3-haiku-20240307" }, Exit.void)
      const series = (yield* Metric.snapshot).filter((pair) =>
        pair.metricKey.name === "plot_engine_provider_calls_total"
      )
      const modelOf = (pair: (typeof series)[number]) => pair.metricKey.tags.find((tag) => tag.key === "model")?.value
      const count = (pair: (typeof series)[number]) => (pair.metricState as unknown as { readonly count: number }).count
      const named = series.filter((pair) => modelOf(pair)?.startsWith("flood-"))
      const other = series.filter((pair) => modelOf(pair) === "other")
      expect(new Set(series.map(modelOf)).size).toBeLessThanOrEqual(257)
      expect(named.length).toBeGreaterThan(0)
      expect(other.reduce((sum, pair) => sum + count(pair), 0)).toBe(300 - named.length)
      expect(series.map(modelOf)).toContain("claude-3-haiku-20240307")
    }))
})
