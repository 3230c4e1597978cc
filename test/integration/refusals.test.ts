/**
 * Refusals over HTTP, in every shape the providers send them, through the real `@effect/ai-openai` and
 * `@effect/ai-anthropic` clients and the whole engine: OpenAI's `refusal` content part (a whole response, and the
 * `response.refusal.*` events of a stream), Anthropic's `stop_reason: "refusal"` (whole and streamed) and OpenAI's
 * 400 `content_policy_violation`. The simulator declines when the prompt carries `[simulate refusal]` or
 * `[simulate content-policy]`, for one dialect or both. On the wall clock, with short timeouts.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type * as Domain from "../../src/Domain.js"
import * as Errors from "../../src/Errors.js"
import * as ModelCatalog from "../../src/ModelCatalog.js"
import type * as PlotGeneration from "../../src/PlotGeneration.js"
import * as RetryPolicy from "../../src/RetryPolicy.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { counterTotal, engineOverSimulator } from "../utils/simulated.js"

const fastPolicy: RetryPolicy.Policy = {
  ...RetryPolicy.mapRules(RetryPolicy.defaults, (rule) => ({ ...rule, delay: "10 millis", jitter: 0 })),
  attemptTimeout: "5 seconds",
  deadline: "20 seconds"
}

let keyCount = 0

/** An engine with both providers, on fresh keys, and the number of requests the simulator receives from now. */
const bothProviders = (policy: RetryPolicy.Policy = fastPolicy) =>
  Effect.gen(function*() {
    const simulator = yield* GatewaySimulator.GatewaySimulator
    keyCount++
    const engine = yield* engineOverSimulator(
      { openai: `sk-refusal-openai-${keyCount}-0123456789`, anthropic: `sk-ant-refusal-${keyCount}-0123456789` },
      { retryPolicy: policy }
    )
    const before = (yield* simulator.stats).requests
    const requests = Effect.map(simulator.stats, (stats) => stats.requests - before)
    return { engine, requests }
  })

const request = (provider: Domain.ProviderName, marker: string): Domain.PlotRequestInput => ({
  projectId: "novel",
  userPrompt: `The interrogation in the cellar, told without flinching. ${marker}`,
  provider
})

/** A generation whole, or streamed to its `Completed` event. */
const generate = (engine: PlotGeneration.Service, input: Domain.PlotRequestInput, streamed: boolean) =>
  streamed
    ? Effect.flatMap(Stream.runCollect(engine.generateStream(input)), (events) => {
      const last = [...events].at(-1)
      return last?._tag === "Completed" ? Effect.succeed(last.result) : Effect.dieMessage("no Completed event")
    })
    : engine.generate(input)

const live = (
  name: string,
  body: () => Effect.Effect<void, unknown, GatewaySimulator.GatewaySimulator | HttpClient.HttpClient | Scope.Scope>
) =>
  it.scopedLive(name, () => Effect.provide(body(), Layer.merge(GatewaySimulator.layer(), NodeHttpClient.layerUndici)))

const tierOf = (provider: Domain.ProviderName, model: string) =>
  Option.getOrUndefined(ModelCatalog.find(ModelCatalog.defaultCatalog, provider, model))?.tier

describe("refusals over HTTP", () => {
  for (const streamed of [false, true]) {
    const how = streamed ? "streamed" : "whole"

    live(
      `OpenAI's refusal part (${how}) hops once to Anthropic's model of the same tier`,
      () =>
        Effect.gen(function*() {
          const { engine, requests } = yield* bothProviders()
          const before = yield* counterTotal("plot_engine_errors_total", { error_type: "refusal", provider: "openai" })
          const result = yield* generate(engine, request("openai", "[simulate refusal: openai]"), streamed)
          expect(result.isTemplate).toBe(false)
          expect(result.provider).toBe("anthropic")
          expect(result.content.length).toBeGreaterThan(100)
          expect(yield* requests).toBe(2)
          expect(
            result.warnings.some((warning) => /Fell back from openai\/.* to anthropic\/.* after refusal/.test(warning))
          )
            .toBe(true)
          const declined = result.attempts[0]
          expect(declined?.provider).toBe("openai")
          expect(tierOf("anthropic", result.model)).toBe(tierOf("openai", declined!.model))
          expect(
            (yield* counterTotal("plot_engine_errors_total", { error_type: "refusal", provider: "openai" })) - before
          ).toBe(1)
        })
    )

    live(
      `Anthropic's refusal stop (${how}) hops once to OpenAI's model of the same tier`,
      () =>
        Effect.gen(function*() {
          const { engine, requests } = yield* bothProviders()
          const result = yield* generate(engine, request("anthropic", "[simulate refusal: anthropic]"), streamed)
          expect(result.provider).toBe("openai")
          expect(result.isTemplate).toBe(false)
          expect(yield* requests).toBe(2)
        })
    )

    live(
      `both providers declining (${how}) end in a RefusalError after one call each, no template`,
      () =>
        Effect.gen(function*() {
          const { engine, requests } = yield* bothProviders()
          const error = yield* Effect.flip(generate(engine, request("openai", "[simulate refusal]"), streamed))
          expect(error._tag).toBe("RefusalError")
          expect(error).toMatchObject({ provider: "anthropic", kind: "answer", reason: "refusal" })
          expect(yield* requests).toBe(2)
          const sentence = Errors.userMessage(error)
          expect(sentence).toContain("declined")
          expect(sentence).toContain("nothing is wrong with your request")
        })
    )
  }

  live("OpenAI's refusal part carries the model's explanation", () =>
    Effect.gen(function*() {
      const { engine } = yield* bothProviders({ ...fastPolicy, onRefusal: "fail" })
      const error = yield* Effect.flip(engine.generate(request("openai", "[simulate refusal: openai]")))
      expect(error).toMatchObject({
        _tag: "RefusalError",
        provider: "openai",
        kind: "answer",
        reason: "I'm sorry, but I can't help with that request."
      })
    }))

  live("a safety system's 400 content_policy_violation is a refusal, and hops like one", () =>
    Effect.gen(function*() {
      const { engine, requests } = yield* bothProviders()
      const result = yield* engine.generate(request("openai", "[simulate content-policy: openai]"))
      expect(result.provider).toBe("anthropic")
      expect(yield* requests).toBe(2)
      const { engine: failing } = yield* bothProviders({ ...fastPolicy, onRefusal: "fail" })
      const error = yield* Effect.flip(failing.generate(request("openai", "[simulate content-policy: openai]")))
      expect(error).toMatchObject({
        _tag: "RefusalError",
        status: 400,
        kind: "content-filter",
        reason: "content_policy_violation"
      })
    }))

  live("with onRefusal: fail, a refusal ends the generation at once: no retry, no hop", () =>
    Effect.gen(function*() {
      const { engine, requests } = yield* bothProviders({ ...fastPolicy, onRefusal: "fail" })
      const error = yield* Effect.flip(engine.generate(request("anthropic", "[simulate refusal: anthropic]")))
      expect(error).toMatchObject({ _tag: "RefusalError", provider: "anthropic" })
      expect(yield* requests).toBe(1)
    }))
})
