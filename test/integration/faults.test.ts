/**
 * Faults over real HTTP: the real `@effect/ai-openai` and `@effect/ai-anthropic` clients against the
 * simulator's scripted faults, through the whole engine (the integration tests of the original testing strategy among them). Delays
 * are configured short: these run on the wall clock.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { GenerationEvent, ProviderName } from "../../src/Domain.js"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import * as RetryPolicy from "../../src/RetryPolicy.js"
import type { ScriptStep } from "../../src/simulator/Faults.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import * as TemplateGenerator from "../../src/TemplateGenerator.js"
import { engineOverSimulator } from "../utils/simulated.js"

/** The default retry table with its delays cut to 10 ms, and short timeouts. */
const fastPolicy: RetryPolicy.Policy = {
  ...RetryPolicy.mapRules(RetryPolicy.defaults, (rule) => ({ ...rule, delay: "10 millis", jitter: 0 })),
  attemptTimeout: "1500 millis",
  deadline: "20 seconds"
}

let keyCount = 0

/**
 * An engine over the simulator with fresh keys, the simulator scripted for them, and one provider (so that
 * there is no hop unless a test wants one); with `withOther`, the other provider too, answering normally:
 * somewhere for the chain to move to when a route is left.
 */
const scriptedEngine = (
  provider: ProviderName,
  steps: ReadonlyArray<ScriptStep>,
  retryPolicy: RetryPolicy.Policy = fastPolicy,
  withOther = false
) =>
  Effect.gen(function*() {
    const simulator = yield* GatewaySimulator.GatewaySimulator
    const key = `sk-fault-${provider}-${++keyCount}-0123456789`
    yield* simulator.script(key, steps)
    const other: ProviderName = provider === "openai" ? "anthropic" : "openai"
    const engine = yield* engineOverSimulator(
      withOther ? { [provider]: key, [other]: `sk-fault-${other}-${++keyCount}-0123456789` } : { [provider]: key },
      { retryPolicy }
    )
    const before = (yield* simulator.stats).requests
    const attempts = Effect.map(simulator.stats, (stats) => stats.requests - before)
    return { engine, attempts }
  })

/** As `scriptedEngine`, with the other provider configured too. */
const scriptedWithOther = (provider: ProviderName, steps: ReadonlyArray<ScriptStep>, retryPolicy = fastPolicy) =>
  scriptedEngine(provider, steps, retryPolicy, true)

const request = (provider: ProviderName) => ({
  projectId: "novel",
  userPrompt: "What happens at the Drowned Bell?",
  provider
})

const collect = (stream: Stream.Stream<GenerationEvent, unknown>) =>
  Effect.map(Stream.runCollect(stream), (chunk) => [...chunk])

/** Each test on its own simulator, on the wall clock. */
const live = (
  name: string,
  body: () => Effect.Effect<void, unknown, GatewaySimulator.GatewaySimulator | HttpClient.HttpClient | Scope.Scope>
) =>
  it.scopedLive(name, () => Effect.provide(body(), Layer.merge(GatewaySimulator.layer(), NodeHttpClient.layerUndici)))

describe("faults over HTTP", () => {
  describe("the original integration tests", () => {
    live("retries on rate limit and succeeds: 3 attempts", () =>
      Effect.gen(function*() {
        const { attempts, engine } = yield* scriptedEngine("openai", [
          { kind: "rate_limit", retryAfterMs: 20 },
          { kind: "rate_limit", retryAfterMs: 20 },
          "ok"
        ])
        const result = yield* engine.generate(request("openai"))
        expect(yield* attempts).toBe(3)
        expect(result.isTemplate).toBe(false)
        expect(result.retryCount).toBe(2)
        expect(result.content.length).toBeGreaterThan(100)
      }))

    live("falls back to template on persistent failure", () =>
      Effect.gen(function*() {
        const { attempts, engine } = yield* scriptedEngine("anthropic", Array(10).fill("server_error"))
        const result = yield* engine.generate(request("anthropic"), { useFallback: true })
        expect(result.isTemplate).toBe(true)
        expect(result.warnings.some((w) => w.includes("generated from a template"))).toBe(true)
        expect(result.warnings).toContain(TemplateGenerator.templateWarning)
        expect(yield* attempts).toBe(4)
      }))
  })

  for (const provider of ["openai", "anthropic"] as const) {
    describe(provider, () => {
      live(
        "retries an error event that arrives mid-stream, and keeps its partial text out of the result",
        () =>
          Effect.gen(function*() {
            const { attempts, engine } = yield* scriptedEngine(provider, ["stream_error", "ok"])
            const events = yield* collect(engine.generateStream(request(provider)))
            const last = events.at(-1)
            expect(yield* attempts).toBe(2)
            expect(events.some((e) => e._tag === "Retrying" && e.errorType === "server_error")).toBe(true)
            expect(last?._tag === "Completed" && last.result.isTemplate).toBe(false)
            expect(last?._tag === "Completed" && last.result.retryCount).toBe(1)
          })
      )

      live("retries a connection reset as a network error", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["reset", "ok"])
          const events = yield* collect(engine.generateStream(request(provider)))
          expect(yield* attempts).toBe(2)
          expect(events.some((e) => e._tag === "Retrying" && e.errorType === "network_error")).toBe(true)
        }))

      live("retries malformed JSON and a truncated stream as server errors", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["malformed_json", "truncated_sse", "ok"])
          const events = yield* collect(engine.generateStream(request(provider)))
          const last = events.at(-1)
          expect(yield* attempts).toBe(3)
          expect(last?._tag === "Completed" && last.result.isTemplate).toBe(false)
        }))

      live(
        "a stream cut after its outline began to show: Restarted voids it, the result is the next answer alone",
        () =>
          Effect.gen(function*() {
            const { attempts, engine } = yield* scriptedEngine(provider, ["truncated_sse", "ok"])
            const events = yield* collect(engine.generateStream(request(provider)))
            expect(yield* attempts).toBe(2)
            const restarted = events.findIndex((e) => e._tag === "Restarted")
            expect(events[restarted]).toMatchObject({ _tag: "Restarted", provider, errorType: "server_error" })
            // Committed: part of the first answer had reached the caller.
            expect(events.slice(0, restarted).some((e) => e._tag === "TextDelta")).toBe(true)
            // Then the retry, and the result built from the second answer alone.
            expect(events[restarted + 1]?._tag).toBe("Retrying")
            const after = events.slice(restarted).flatMap((e) => (e._tag === "TextDelta" ? [e.delta] : []))
            const last = events.at(-1)
            expect(last?._tag === "Completed" && last.result.content).toBe(after.join(""))
          })
      )

      live("a failure before anything showed restarts nothing: no Restarted", () =>
        Effect.gen(function*() {
          const { engine } = yield* scriptedEngine(provider, ["reset", "ok"])
          const events = yield* collect(engine.generateStream(request(provider)))
          expect(events.some((e) => e._tag === "Restarted")).toBe(false)
        }))

      live("retries a malformed JSON body of a non-streamed reply", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["malformed_json", "ok"])
          const result = yield* engine.generate(request(provider))
          expect(yield* attempts).toBe(2)
          expect(result.isTemplate).toBe(false)
        }))

      live(
        "a silent provider costs one attempt timeout, then the chain moves on (no retry of the silent route)",
        () =>
          Effect.gen(function*() {
            const { attempts, engine } = yield* scriptedWithOther(provider, ["hang", "ok"])
            const started = Date.now()
            const events = yield* collect(engine.generateStream(request(provider)))
            expect(yield* attempts).toBe(2)
            expect(events.some((e) => e._tag === "Retrying")).toBe(false)
            expect(events.find((e) => e._tag === "Fallback")).toMatchObject({ reason: "timeout" })
            expect(events.at(-1)).toMatchObject({ _tag: "Completed", result: { isTemplate: false } })
            // One attempt timeout (1.5 s), not three.
            expect(Date.now() - started).toBeLessThan(3_000)
          })
      )

      live("times out a stream that goes silent midway (idle limit) and moves on", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedWithOther(provider, ["stall", "ok"], {
            ...fastPolicy,
            attemptTimeout: "10 seconds",
            idleTimeout: "300 millis"
          })
          const started = Date.now()
          const events = yield* collect(engine.generateStream(request(provider)))
          expect(yield* attempts).toBe(2)
          expect(events.find((e) => e._tag === "Fallback")).toMatchObject({ reason: "timeout" })
          // The idle limit ended the first attempt, long before its attempt timeout.
          expect(Date.now() - started).toBeLessThan(8_000)
          expect(events.at(-1)).toMatchObject({ _tag: "Completed", result: { isTemplate: false } })
        }))

      live(
        "times out a stream that goes silent midway at the attempt timeout without an idle limit",
        () =>
          Effect.gen(function*() {
            const { attempts, engine } = yield* scriptedWithOther(provider, ["stall", "ok"], {
              ...fastPolicy,
              attemptTimeout: "600 millis"
            })
            const events = yield* collect(engine.generateStream(request(provider)))
            expect(yield* attempts).toBe(2)
            expect(events.find((e) => e._tag === "Fallback")).toMatchObject({ reason: "timeout" })
            expect(events.at(-1)).toMatchObject({ _tag: "Completed", result: { isTemplate: false } })
          })
      )

      live("fails a wrong key after one request", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["auth"])
          const error = yield* Effect.flip(engine.generate(request(provider)))
          expect(error._tag).toBe("AuthError")
          expect(yield* attempts).toBe(1)
        }))

      live("does not retry an exhausted quota", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["insufficient_quota"])
          const error = yield* Effect.flip(engine.generate(request(provider)))
          expect(error._tag).toBe("QuotaExhaustedError")
          expect(yield* attempts).toBe(1)
        }))

      live("retries the context-length error once with a smaller prompt", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["context_length", "context_length"])
          const error = yield* Effect.flip(engine.generate(request(provider)))
          expect(error._tag).toBe("ContextTooLongError")
          expect(yield* attempts).toBe(2)
        }))

      live("retries 529 overloaded, and 502 and 503 from the gateway", () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, [
            "overloaded",
            "bad_gateway",
            "unavailable",
            "ok"
          ])
          const result = yield* engine.generate(request(provider))
          expect(yield* attempts).toBe(4)
          expect(result.isTemplate).toBe(false)
        }))
    })
  }

  describe("errors mid-stream, as the providers send them", () => {
    for (const provider of ["openai", "anthropic"] as const) {
      live(
        `${provider}: a rate limit mid-stream is retried as a rate limit, and says so`,
        () =>
          Effect.gen(function*() {
            const { attempts, engine } = yield* scriptedEngine(provider, [
              { kind: "stream_rate_limit", retryAfterMs: 1_500 },
              "ok"
            ])
            const events = yield* collect(engine.generateStream(request(provider)))
            const retrying = events.find((e) => e._tag === "Retrying")
            expect(yield* attempts).toBe(2)
            expect(retrying?._tag === "Retrying" && retrying.errorType).toBe("rate_limit")
            const last = events.at(-1)
            expect(last?._tag === "Completed" && last.result.isTemplate).toBe(false)
            if (provider === "openai") {
              // "Please try again in 1.5s": the wait the message asks for is the floor of the delay (10 ms here).
              expect(retrying?._tag === "Retrying" && retrying.delayMs).toBe(1_500)
              expect(last?._tag === "Completed" && last.result.durationMs).toBeGreaterThanOrEqual(1_500)
            }
          })
      )

      live(
        provider === "openai"
          ? "openai: an error event in the documented flat shape, and a failed response, are server errors"
          : "anthropic: an error event of a type the client did not list is read by its type, an api_error event is a server error",
        () =>
          Effect.gen(function*() {
            const { attempts, engine } = yield* scriptedEngine(provider, ["stream_error_flat", "response_failed", "ok"])
            const events = yield* collect(engine.generateStream(request(provider)))
            expect(yield* attempts).toBe(3)
            expect(events.filter((e) => e._tag === "Retrying").map((e) => e._tag === "Retrying" && e.errorType))
              .toEqual([provider === "openai" ? "server_error" : "timeout", "server_error"])
            const last = events.at(-1)
            expect(last?._tag === "Completed" && last.result.isTemplate).toBe(false)
          })
      )
    }
  })
})

describe("an answer cut off at its output limit", () => {
  for (const provider of ["openai", "anthropic"] as const) {
    live(
      `${provider}: the cut tool call is an incomplete response, asked again with room, plain`,
      () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["cut_off", "ok"])
          const result = yield* engine.generate(request(provider))
          expect(yield* attempts).toBe(2)
          expect([result.isTemplate, result.retryCount]).toEqual([false, 1])
        })
    )

    live(
      `${provider}: the cut tool call is an incomplete response, asked again with room, streamed`,
      () =>
        Effect.gen(function*() {
          const { attempts, engine } = yield* scriptedEngine(provider, ["cut_off", "ok"])
          const events = yield* collect(engine.generateStream(request(provider)))
          expect(yield* attempts).toBe(2)
          expect(events.filter((e) => e._tag === "Retrying").map((e) => e._tag === "Retrying" && e.errorType))
            .toEqual(["incomplete_response"])
          const last = events.at(-1)
          expect(last?._tag === "Completed" && last.result.isTemplate).toBe(false)
        })
    )
  }
})

describe("a model the provider does not serve", () => {
  const keys = { openai: "sk-unknown-model-openai-0123", anthropic: "sk-ant-unknown-model-0123" }
  const liveBoth = (
    name: string,
    body: () => Effect.Effect<void, unknown, GatewaySimulator.GatewaySimulator | HttpClient.HttpClient | Scope.Scope>
  ) =>
    it.scopedLive(
      name,
      () => Effect.provide(body(), Layer.merge(GatewaySimulator.layer({ apiKeys: keys }), NodeHttpClient.layerUndici))
    )

  for (const provider of ["openai", "anthropic"] as const) {
    liveBoth(`${provider}: a pinned one fails at once, typed, without a retry`, () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const engine = yield* engineOverSimulator({ [provider]: keys[provider] }, { retryPolicy: fastPolicy })
        const error = yield* Effect.flip(engine.generate({ ...request(provider), model: "model-that-is-not-there" }))
        expect(error).toMatchObject({ _tag: "ModelNotFoundError", status: 404, model: "model-that-is-not-there" })
        expect((yield* simulator.stats).requests).toBe(1)
      }))
  }

  liveBoth("a chosen one is left for the next model of the chain", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      // The fast OpenAI model renamed to an id the gateway does not serve.
      const catalog = ModelCatalog.defaultCatalog.map((m) =>
        m.id === "gpt-4.1-mini" ? new ModelCatalog.ModelInfo({ ...m, id: "gpt-turbo-unreleased" }) : m
      )
      const engine = yield* engineOverSimulator(keys, { retryPolicy: fastPolicy, catalog })
      const result = yield* engine.generate({ projectId: "novel", userPrompt: "What happens at the Drowned Bell?" })
      expect([result.model, result.isTemplate]).toEqual(["claude-haiku-4-5", false])
      expect((yield* simulator.stats).requests).toBe(2)
      expect(result.warnings).toContain(
        "Fell back from openai/gpt-turbo-unreleased to anthropic/claude-haiku-4-5 after model_not_found."
      )
    }))
})
