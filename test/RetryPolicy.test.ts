/**
 * The default retry table, Retry-After, the fallback chain and the circuit breaker, exact in virtual time:
 * every delay is read off the Clock at which the fake model was called, jitter pinned with `Random.fixed`.
 */
import type * as Response from "@effect/ai/Response"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../src/Alerts.js"
import type { GenerationEvent, PlotRequestInput, ProviderName } from "../src/Domain.js"
import * as Errors from "../src/Errors.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import * as TemplateGenerator from "../src/TemplateGenerator.js"
import {
  type Answer,
  type Call,
  die,
  fail,
  httpError,
  parts,
  sampleOutlineJson,
  scripted,
  text,
  transportError
} from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"

// ---------------------------------------------------------------------------------------------------------------
// What providers send
// ---------------------------------------------------------------------------------------------------------------

const openAiBody = (type: string, code: string | null, message: string) => ({
  error: { message, type, param: null, code }
})
const rateLimited = (headers: Record<string, string> = {}) =>
  fail(httpError(429, openAiBody("requests", "rate_limit_exceeded", "Rate limit reached for requests"), headers))
const serverError = fail(httpError(500, openAiBody("server_error", null, "The server had an error")))
const overloaded = fail(
  httpError(529, { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }, {
    "x-should-retry": "true"
  })
)
const gatewayTimeout = fail(httpError(504, "Gateway Timeout"))
/** OpenAI's 404 for a model it does not serve. */
const notServedBy = (model: string) =>
  fail(httpError(
    404,
    openAiBody(
      "invalid_request_error",
      "model_not_found",
      `The model \`${model}\` does not exist or you do not have access to it.`
    )
  ))
const unauthorized = fail(
  httpError(401, openAiBody("invalid_request_error", "invalid_api_key", "Incorrect API key provided"))
)
const invalid = fail(
  httpError(400, openAiBody("invalid_request_error", "invalid_value", "Invalid value for 'temperature'"))
)
const noQuota = fail(
  httpError(429, openAiBody("insufficient_quota", "insufficient_quota", "You exceeded your current quota"))
)
const tooLong = fail(
  httpError(
    400,
    openAiBody(
      "invalid_request_error",
      "context_length_exceeded",
      "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens."
    )
  )
)
const networkDown = fail(transportError())
const ok = text(sampleOutlineJson)

// ---------------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------------

interface Scripts {
  readonly openai?: ReadonlyArray<Answer>
  readonly anthropic?: ReadonlyArray<Answer>
}

/** The engine over scripted providers; `calls` records every call with its time. */
const engine = (scripts: Scripts, calls: Array<Call>, options: PlotGeneration.Options = {}) =>
  PlotGeneration.layer(options).pipe(
    Layer.provide(Providers.layerModels(Object.fromEntries(
      (Object.entries(scripts) as Array<[ProviderName, ReadonlyArray<Answer>]>).map((
        [provider, answers]
      ) => [provider, scripted(answers, calls)])
    ))),
    Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
    Layer.provide(ProviderRateLimiter.layerUnlimited),
    Layer.provide(Alerts.layerDisabled)
  )

const pinned: PlotRequestInput = {
  projectId: "novel",
  userPrompt: "What happens next?",
  provider: "openai",
  model: "gpt-4.1"
}
const chosen: PlotRequestInput = { projectId: "novel", userPrompt: "What happens next?" }

/**
 * Generates to the end in virtual time, collecting the events, with the jitter pinned at `jitter` (of the rule's
 * jitter: 0.5 of the rate limit's 1 s is 500 ms). The pin is applied here, innermost: a `Random.fixed` around the
 * call would not apply.
 */
const generateWithJitter = (
  jitter: number,
  input: PlotRequestInput,
  options?: { useFallback?: boolean },
  advance: Duration.DurationInput = "30 minutes"
) =>
  Effect.gen(function*() {
    const engine = yield* PlotGeneration.PlotGeneration
    const events: Array<GenerationEvent> = []
    const fiber = yield* engine.generateStream(input, options).pipe(
      Stream.runForEach((event) => Effect.sync(() => events.push(event))),
      Effect.either,
      Effect.fork
    )
    yield* TestClock.adjust(advance)
    const outcome = yield* Fiber.join(fiber)
    const completed = events.find((e) => e._tag === "Completed")
    return { outcome, events, result: completed?._tag === "Completed" ? completed.result : undefined }
  }).pipe(Effect.withRandom(Random.fixed([jitter])))

/** Generates to the end in virtual time, collecting the events, with the jitter pinned at 0.5 (500 ms). */
const generate = (
  input: PlotRequestInput,
  options?: { useFallback?: boolean },
  advance: Duration.DurationInput = "30 minutes"
) => generateWithJitter(0.5, input, options, advance)

/** Which provider a catalog model is of, by its name. */
const providerOf = (model: string) => model.startsWith("claude") ? "anthropic" : "openai"

/** The delays between consecutive calls, in milliseconds. */
const gaps = (calls: ReadonlyArray<Call>) => calls.slice(1).map((call, i) => call.at - calls[i]!.at)

const retrying = (events: ReadonlyArray<GenerationEvent>) =>
  events.flatMap((e) => (e._tag === "Retrying" ? [[e.errorType, e.delayMs] as const] : []))

// ---------------------------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------------------------

describe("RetryPolicy: the default table, one row at a time (one model, always failing)", () => {
  it.effect.each(
    [
      ["rate limit: 5 retries, 1 s x 2^n + jitter (pinned at 0.5 s)", rateLimited(), "RateLimitError", [
        1_500,
        2_500,
        4_500,
        8_500,
        16_500
      ]],
      ["timeout: 2 retries at 2 s", gatewayTimeout, "TimeoutError", [2_000, 2_000]],
      ["server: 3 retries at 5 s", serverError, "ServerError", [5_000, 5_000, 5_000]],
      ["network: 3 retries at 3 s", networkDown, "NetworkError", [3_000, 3_000, 3_000]],
      ["context too long: 1 retry at once", tooLong, "ContextTooLongError", [0]],
      ["auth: no retry", unauthorized, "AuthError", []],
      ["invalid request: no retry", invalid, "InvalidRequestError", []],
      ["quota: no retry", noQuota, "QuotaExhaustedError", []]
    ] as const
  )("%s", ([_, answer, tag, delays]) => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { outcome } = yield* generate(pinned, { useFallback: false })
      expect(outcome._tag === "Left" && outcome.left._tag).toBe(tag)
      expect(calls).toHaveLength(delays.length + 1)
      expect(gaps(calls)).toEqual(delays)
    }).pipe(Effect.provide(engine({ openai: [answer] }, calls)))
  })

  it("caps a long exponential backoff at 60 s", () => {
    const rule = { ...RetryPolicy.defaults.rules.RateLimitError, retries: 9 }
    const delays = Effect.runSync(
      Schedule.run(RetryPolicy.forRule(rule, RetryPolicy.defaults.maxDelay), 0, Array.from({ length: 9 }, (_, i) => i))
        .pipe(
          Effect.withRandom(Random.fixed([0.5]))
        )
    )
    expect(Chunk.toArray(delays).slice(0, 9).map(Duration.toMillis)).toEqual([
      1_500,
      2_500,
      4_500,
      8_500,
      16_500,
      32_500,
      60_000,
      60_000,
      60_000
    ])
  })
})

describe("RetryPolicy: the issue's scenarios", () => {
  it.effect("429, 429, ok: 3 attempts, delays 1 s and 2 s plus the pinned jitter", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { events, result } = yield* generate(pinned)
      expect(result?.isTemplate).toBe(false)
      expect(result?.retryCount).toBe(2)
      expect(calls).toHaveLength(3)
      expect(gaps(calls)).toEqual([1_500, 2_500])
      expect(retrying(events)).toEqual([["rate_limit", 1_500], ["rate_limit", 2_500]])
    }).pipe(Effect.provide(engine({ openai: [rateLimited(), rateLimited(), ok] }, calls)))
  })

  it.effect("honours retry-after-ms: 4000 as the floor of the delay, above the schedule's own 1 s", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      // Jitter pinned at 0: the table's own first delay is 1,000 ms, well under the 4,000 asked for.
      const { events, result } = yield* generateWithJitter(0, pinned)
      expect(result?.isTemplate).toBe(false)
      expect(gaps(calls)).toEqual([4_000])
      expect(retrying(events)).toEqual([["rate_limit", 4_000]])
    }).pipe(Effect.provide(engine({ openai: [rateLimited({ "retry-after-ms": "4000" }), ok] }, calls)))
  })

  it.effect("without a retry-after, the same 429 with the jitter pinned at 0 waits the table's 1 s", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      yield* generateWithJitter(0, pinned)
      expect(gaps(calls)).toEqual([1_000])
    }).pipe(Effect.provide(engine({ openai: [rateLimited(), ok] }, calls)))
  })

  it.effect("waits a retry-after equal to the cap: retry-after-ms 60000 is slept, to the millisecond", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { events, result } = yield* generateWithJitter(0, chosen)
      expect(calls.map((c) => [c.model, c.at])).toEqual([["gpt-4.1-mini", 0], ["gpt-4.1-mini", 60_000]])
      expect(retrying(events)).toEqual([["rate_limit", 60_000]])
      expect(events.filter((e) => e._tag === "Fallback")).toEqual([])
      expect(result?.model).toBe("gpt-4.1-mini")
    }).pipe(
      Effect.provide(engine({ openai: [rateLimited({ "retry-after-ms": "60000" }), ok], anthropic: [ok] }, calls))
    )
  })

  it.effect("does not wait a retry-after a millisecond above the cap: retry-after-ms 60001 hops on at once", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { events, result } = yield* generateWithJitter(0, chosen)
      expect(calls.map((c) => [c.model, c.at])).toEqual([["gpt-4.1-mini", 0], ["claude-haiku-4-5", 0]])
      expect(retrying(events)).toEqual([])
      expect(events.filter((e) => e._tag === "Fallback")).toEqual([{
        _tag: "Fallback",
        from: "openai/gpt-4.1-mini",
        to: "anthropic/claude-haiku-4-5",
        reason: "rate_limit"
      }])
      expect(result?.model).toBe("claude-haiku-4-5")
    }).pipe(
      Effect.provide(engine({ openai: [rateLimited({ "retry-after-ms": "60001" }), ok], anthropic: [ok] }, calls))
    )
  })

  it.effect("without a fallback, a retry-after a millisecond above the cap ends the generation: no retry", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { events, outcome } = yield* generateWithJitter(0, pinned, { useFallback: false })
      expect(calls.map((c) => c.at)).toEqual([0])
      expect(retrying(events)).toEqual([])
      expect(outcome._tag === "Left" && outcome.left).toMatchObject({ _tag: "RateLimitError", retryAfterMs: 60_001 })
    }).pipe(Effect.provide(engine({ openai: [rateLimited({ "retry-after-ms": "60001" }), ok] }, calls)))
  })

  it.effect("does not sleep 120 s for retry-after: 120; hops to the next model at once", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { events, result } = yield* generate(chosen)
      expect(calls.map((c) => [c.model, c.at])).toEqual([["gpt-4.1-mini", 0], ["claude-haiku-4-5", 0]])
      expect(result?.model).toBe("claude-haiku-4-5")
      expect(events).toContainEqual({
        _tag: "Fallback",
        from: "openai/gpt-4.1-mini",
        to: "anthropic/claude-haiku-4-5",
        reason: "rate_limit"
      })
      expect(result?.warnings).toContain(
        "Fell back from openai/gpt-4.1-mini to anthropic/claude-haiku-4-5 after rate_limit."
      )
    }).pipe(Effect.provide(engine({ openai: [rateLimited({ "retry-after": "120" }), ok], anthropic: [ok] }, calls)))
  })

  it.effect("announces a retry only when the same model is called again: a hop is a Fallback, the end says no retry", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { events, outcome } = yield* generate(chosen, { useFallback: false })
      const told = events.flatMap((e) =>
        e._tag === "Retrying"
          ? [["Retrying", `${e.provider}/${e.model}`, e.delayMs]]
          : e._tag === "Fallback"
          ? [["Fallback", e.from, e.to]]
          : []
      )
      // gpt-4.1-mini: a 429 asking two minutes (a hop, not a retry); haiku: server errors, retried on the table
      // (5 s each) until the budget of the server rule (3 retries) ends the chain.
      expect(told).toEqual([
        ["Fallback", "openai/gpt-4.1-mini", "anthropic/claude-haiku-4-5"],
        ["Retrying", "anthropic/claude-haiku-4-5", 5_000],
        ["Retrying", "anthropic/claude-haiku-4-5", 5_000],
        ["Retrying", "anthropic/claude-haiku-4-5", 5_000]
      ])
      expect(calls.map((c) => c.model)).toEqual([
        "gpt-4.1-mini",
        "claude-haiku-4-5",
        "claude-haiku-4-5",
        "claude-haiku-4-5",
        "claude-haiku-4-5"
      ])
      expect(outcome._tag === "Left" && outcome.left._tag).toBe("ServerError")
      // Every Retrying event says it will retry; the failure's sentence for the writer does not.
      expect(
        events.filter((e) => e._tag === "Retrying").every((e) => e._tag === "Retrying" && /retry/i.test(e.message))
      )
        .toBe(true)
      expect(outcome._tag === "Left" && Errors.userMessage(outcome.left)).toBe(
        "The AI service failed to answer. Please try again later."
      )
    }).pipe(Effect.provide(engine({
      openai: [rateLimited({ "retry-after": "120" })],
      anthropic: Array(10).fill(serverError)
    }, calls)))
  })

  it.effect("fails a wrong key after one attempt with AuthError, on no other model", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { outcome } = yield* generate(chosen)
      expect(outcome._tag === "Left" && outcome.left._tag).toBe("AuthError")
      expect(calls).toHaveLength(1)
    }).pipe(Effect.provide(engine({ openai: [unauthorized], anthropic: [ok] }, calls)))
  })

  it.effect("retries context_length_exceeded exactly once, with a strictly smaller prompt", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { outcome } = yield* generate(pinned, { useFallback: false })
      expect(outcome._tag === "Left" && outcome.left._tag).toBe("ContextTooLongError")
      expect(calls).toHaveLength(2)
      expect(JSON.stringify(calls[1]!.prompt).length).toBeLessThan(JSON.stringify(calls[0]!.prompt).length)
    }).pipe(Effect.provide(engine({ openai: [tooLong] }, calls)))
  })

  it.effect("after the smaller retry, moves only to a model with a bigger window", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      // premium Anthropic (200K) is chosen; gpt-5 (400K) has the bigger window.
      const { result } = yield* generate({
        ...chosen,
        userPrompt: "A detailed, nuanced betrayal",
        targetWordCount: 2_500
      })
      expect(calls.map((c) => c.model)).toEqual(["claude-opus-4-1", "claude-opus-4-1", "gpt-5"])
      expect(result?.model).toBe("gpt-5")
    }).pipe(Effect.provide(engine({ anthropic: [tooLong], openai: [ok] }, calls)))
  })

  it.effect("retries 529 overloaded, then succeeds", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* generate(pinned)
      expect(result?.isTemplate).toBe(false)
      expect(gaps(calls)).toEqual([5_000])
    }).pipe(Effect.provide(engine({ openai: [overloaded, ok] }, calls)))
  })

  it.effect("retries a kind it would not when the provider says to (x-should-retry: true), as a server error", () => {
    const calls: Array<Call> = []
    const invalidButRetry = fail(
      httpError(400, openAiBody("invalid_request_error", null, "Please try again."), { "x-should-retry": "true" })
    )
    return Effect.gen(function*() {
      const result = yield* generate(pinned, { useFallback: false })
      // Before, the schedule retried it but the chain's step refused the same model again: one call, a failure.
      expect(calls.map((call) => call.at)).toEqual([0, 5_000])
      expect(result.result?.isTemplate).toBe(false)
    }).pipe(Effect.provide(engine({ openai: [invalidButRetry, ok] }, calls)))
  })

  it.effect("turns 5 x 500 into the template, with its warning", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* generate(chosen)
      expect(result?.isTemplate).toBe(true)
      expect(result?.warnings[0]).toBe(TemplateGenerator.templateWarning)
      // One model configured: the first attempt and the table's 3 retries.
      expect(calls).toHaveLength(4)
      expect(result?.retryCount).toBe(3)
    }).pipe(
      Effect.provide(engine({ openai: [serverError, serverError, serverError, serverError, serverError] }, calls))
    )
  })

  it.effect("never multiplies retries across hops: the server rule's 3 retries cover the whole chain", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* generate(chosen)
      expect(result?.isTemplate).toBe(true)
      expect(calls.map((c) => c.model)).toEqual([
        "gpt-4.1-mini",
        "gpt-4.1-mini",
        "gpt-4.1-mini",
        "gpt-4.1-mini",
        "claude-haiku-4-5"
      ])
    }).pipe(Effect.provide(engine({ openai: [serverError], anthropic: [serverError] }, calls)))
  })

  it.effect("does not retry insufficient_quota; goes to the other provider", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* generate({ ...chosen, userPrompt: "A detailed betrayal", costSensitive: false })
      expect(calls.map((c) => c.model)).toEqual(["gpt-4.1", "claude-sonnet-4-5"])
      expect(result?.provider).toBe("anthropic")
    }).pipe(Effect.provide(engine({ openai: [noQuota], anthropic: [ok] }, calls)))
  })

  it.effect("goes to the other provider when Anthropic's credits or spend limit are spent (a plain 400)", () => {
    const claude400 = (message: string) =>
      fail(httpError(400, { type: "error", error: { type: "invalid_request_error", message } }))
    const creditsSpent = claude400(
      "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."
    )
    const limitReached = claude400(
      "You have reached your specified API usage limits. You will regain access on 2026-04-01 at 00:00 UTC."
    )
    return Effect.gen(function*() {
      for (const refusal of [creditsSpent, limitReached]) {
        const calls: Array<Call> = []
        const { result } = yield* generate({ ...chosen, provider: "anthropic" }).pipe(
          Effect.provide(engine({ anthropic: [refusal], openai: [ok] }, calls))
        )
        // Before, a bad request: the generation ended, OpenAI never asked.
        expect([calls.map((c) => providerOf(c.model)), result?.provider]).toEqual([["anthropic", "openai"], "openai"])
      }
    })
  })

  it.effect("takes OpenAI's safety rejection of a reasoning model's prompt, streamed, to the other provider at once", () => {
    const calls: Array<Call> = []
    const flagged = {
      _tag: "StreamError" as const,
      partial: "",
      event: {
        code: "invalid_prompt",
        message: "Invalid prompt: your prompt was flagged as potentially violating our usage policy."
      }
    }
    return Effect.gen(function*() {
      const { result } = yield* generate({ ...chosen, provider: "openai" })
      // Before, a server error: retried three times, 5 s apart, on the model that refused.
      expect(calls.map((c) => [providerOf(c.model), c.at])).toEqual([["openai", 0], ["anthropic", 0]])
      expect(result?.provider).toBe("anthropic")
    }).pipe(Effect.provide(engine({ openai: [flagged], anthropic: [ok] }, calls)))
  })

  it.effect("reads a streamed failure announced without its cause from the error event after it (Azure)", () => {
    const failedWithoutCause: Response.StreamPartEncoded = {
      type: "error",
      error: {
        type: "response.failed",
        response: { id: "resp_1", status: "failed", error: null, incomplete_details: null, output: [], usage: null },
        sequence_number: 1
      }
    }
    const rateLimited: Response.StreamPartEncoded = {
      type: "error",
      error: {
        type: "too_many_requests",
        code: "rate_limit_exceeded",
        message: "Your requests to the deployment have exceeded rate limit.",
        param: null
      }
    }
    return Effect.gen(function*() {
      // In one network chunk or in two, and alone (then all there is to go on).
      for (
        const [answer, errorType] of [
          [parts([failedWithoutCause, rateLimited]), "rate_limit"],
          [parts([failedWithoutCause], [rateLimited]), "rate_limit"],
          [parts([failedWithoutCause]), "server_error"]
        ] as const
      ) {
        const calls: Array<Call> = []
        const { events, result } = yield* generate({ ...chosen, provider: "openai" }).pipe(
          Effect.provide(engine({ openai: [answer, ok] }, calls))
        )
        // Before, the first error part decided: a server error, its rate limit unseen.
        const retry = events.find((e) => e._tag === "Retrying")
        expect([retry?._tag === "Retrying" && retry.errorType, result?.isTemplate]).toEqual([errorType, false])
      }
    })
  })

  it.effect("skips a model its provider does not serve for 10 minutes, then asks again", () => {
    const calls: Array<Call> = []
    const notServed = notServedBy("gpt-4.1")
    // gpt-4.1 is retired at the provider; gpt-4.1-mini answers.
    const retired = PlotGeneration.layer().pipe(
      Layer.provide(Providers.layerModels({
        openai: (model, parameters) => scripted(model === "gpt-4.1" ? [notServed] : [ok], calls)(model, parameters)
      })),
      Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
      Layer.provide(ProviderRateLimiter.layerUnlimited),
      Layer.provide(Alerts.layerDisabled)
    )
    const request = { ...chosen, userPrompt: "A detailed betrayal" }
    return Effect.gen(function*() {
      const first = yield* generate(request, undefined, "1 second")
      expect(first.events.filter((e) => e._tag === "CircuitChanged")).toMatchObject([{
        model: "gpt-4.1",
        state: "open"
      }])
      // Before, every generation asked gpt-4.1 first and learnt again that it is gone.
      yield* generate(request, undefined, "1 second")
      yield* TestClock.adjust("10 minutes")
      const probed = yield* generate(request, undefined, "1 second")
      expect(calls.map((c) => [c.model, c.at])).toEqual([
        ["gpt-4.1", 0],
        ["gpt-4.1-mini", 0],
        ["gpt-4.1-mini", 1_000],
        ["gpt-4.1", 602_000],
        ["gpt-4.1-mini", 602_000]
      ])
      expect(probed.result?.model).toBe("gpt-4.1-mini")
      // Pinned to it, a request is told what the provider said, without asking it again (found by review: the open
      // circuit read as a server error, and the writer got a template).
      for (let i = 0; i < 2; i++) {
        const pinnedToIt = yield* generate(pinned, {
          useFallback: false
        }, "1 second")
        expect(pinnedToIt.outcome._tag === "Left" && pinnedToIt.outcome.left._tag).toBe("ModelNotFoundError")
      }
      expect(calls.filter((c) => c.model === "gpt-4.1")).toHaveLength(2)
    }).pipe(Effect.provide(retired))
  })

  it.effect("remembers what the provider said of the last 1,000 models it does not serve, the oldest forgotten first", () => {
    const calls: Array<Call> = []
    const notServed = notServedBy("made-up")
    const madeUp = (i: number): PlotRequestInput => ({ ...chosen, provider: "openai", model: `made-up-${i}` })
    const errorTag = (outcome: { readonly outcome: Either.Either<unknown, { readonly _tag: string }> }) =>
      Either.match(outcome.outcome, { onLeft: (error) => error._tag, onRight: () => "result" })
    return Effect.gen(function*() {
      for (let i = 0; i <= 1_000; i++) yield* generate(madeUp(i), { useFallback: false }, "1 millis")
      expect(calls).toHaveLength(1_001)
      // Both circuits are still open (no call); the newest is told what the provider said, the oldest only that its
      // circuit is open: what was said of it made room.
      expect(errorTag(yield* generate(madeUp(1_000), { useFallback: false }, "1 millis"))).toBe("ModelNotFoundError")
      expect(errorTag(yield* generate(madeUp(0), { useFallback: false }, "1 millis"))).toBe("ServerError")
      // Only the oldest made room (before, the whole memory was dropped at 1,000).
      expect(errorTag(yield* generate(madeUp(1), { useFallback: false }, "1 millis"))).toBe("ModelNotFoundError")
      expect(calls).toHaveLength(1_001)
    }).pipe(Effect.provide(engine({ openai: [notServed] }, calls)))
  })

  it.effect("fails on insufficient_quota when there is no other provider", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { outcome } = yield* generate(chosen)
      expect(outcome._tag === "Left" && outcome.left._tag).toBe("QuotaExhaustedError")
      expect(calls).toHaveLength(1)
    }).pipe(Effect.provide(engine({ openai: [noQuota] }, calls)))
  })

  it.effect("downgrades to a cheaper model of the same provider before the other provider", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { result } = yield* generate({ ...chosen, userPrompt: "A detailed betrayal" })
      // gpt-4.1 fails with a retry-after above the cap: gpt-4.1-mini is next.
      expect(calls.map((c) => c.model)).toEqual(["gpt-4.1", "gpt-4.1-mini"])
      expect(result?.model).toBe("gpt-4.1-mini")
    }).pipe(Effect.provide(engine({ openai: [rateLimited({ "retry-after": "300" }), ok] }, calls)))
  })

  it.effect("gives an attempt its timeout, and does not call the silent route again", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { outcome } = yield* generate(pinned, { useFallback: false })
      expect(outcome._tag === "Left" && outcome.left).toMatchObject({ _tag: "TimeoutError", kind: "attempt" })
      // The one model, its one deployment silent for the attempt's 60 s: nowhere else to go.
      expect(calls.map((c) => c.at)).toEqual([0])
    }).pipe(Effect.provide(
      // Without the stream's first-token limit, which would end each silent attempt at 30 s.
      engine({ openai: [{ _tag: "Hang" }] }, calls, {
        retryPolicy: { ...RetryPolicy.defaults, firstTokenTimeout: undefined }
      })
    ))
  })

  it.effect("gives each model of the chain one attempt timeout, and the generation its deadline", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const { outcome } = yield* generate(chosen, { useFallback: false })
      // 60 s for the silent first model, the next at once: its attempt would end past the 100 s deadline, which
      // cuts it at 100 s.
      expect(calls.map((c) => c.at)).toEqual([0, 60_000])
      expect(new Set(calls.map((c) => c.model)).size).toBe(2)
      expect(outcome._tag === "Left" && outcome.left).toMatchObject({ _tag: "TimeoutError", kind: "deadline" })
    }).pipe(Effect.provide(
      engine({ openai: [{ _tag: "Hang" }], anthropic: [{ _tag: "Hang" }] }, calls, {
        retryPolicy: { ...RetryPolicy.defaults, firstTokenTimeout: undefined, deadline: "100 seconds" }
      })
    ))
  })

  it.effect("stops after the attempt budget", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      yield* generate(pinned, { useFallback: false })
      expect(calls).toHaveLength(3)
    }).pipe(
      Effect.provide(
        engine({ openai: [rateLimited()] }, calls, { retryPolicy: { ...RetryPolicy.defaults, maxAttempts: 3 } })
      )
    )
  })
})

describe("CircuitBreaker in the chain", () => {
  const noRetries = {
    ...RetryPolicy.defaults,
    rules: { ...RetryPolicy.defaults.rules, ServerError: { ...RetryPolicy.defaults.rules.ServerError, retries: 0 } }
  }

  it.effect("opens after 5 failures, skips the model, and half-opens for one probe after 30 s", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const states: Array<string> = []
      for (let i = 0; i < 5; i++) {
        const { events } = yield* generate(pinned, {}, "1 second")
        for (const e of events) if (e._tag === "CircuitChanged") states.push(`${e.model}:${e.state}`)
      }
      expect(calls).toHaveLength(5)
      expect(states).toEqual(["gpt-4.1:open"])
      // Open: the model is not called; the template answers.
      const skipped = yield* generate(pinned, {}, "1 second")
      expect(calls).toHaveLength(5)
      expect(skipped.result?.isTemplate).toBe(true)
      // Still open just before the cool-down ends (opened at 4 s, now 6 s)...
      yield* TestClock.adjust("27 seconds")
      yield* generate(pinned, {}, "0 seconds")
      expect(calls).toHaveLength(5)
      // ...then half-open: one probe goes through, succeeds, and closes the circuit.
      yield* TestClock.adjust("1 second")
      const probe = yield* generate(pinned, {}, "0 seconds")
      expect(calls).toHaveLength(6)
      expect(probe.result?.isTemplate).toBe(false)
      expect(probe.events).toContainEqual({
        _tag: "CircuitChanged",
        provider: "openai",
        model: "gpt-4.1",
        state: "closed"
      })
    }).pipe(Effect.provide(engine(
      { openai: [serverError, serverError, serverError, serverError, serverError, ok] },
      calls,
      { retryPolicy: noRetries, circuitBreaker: { threshold: 5, cooldown: "30 seconds" } }
    )))
  })

  it.effect("a model skipped for its open circuit is a Fallback for that reason", () => {
    const calls: Array<Call> = []
    const openaiFirst: PlotRequestInput = { projectId: "novel", userPrompt: "What happens next?", provider: "openai" }
    return Effect.gen(function*() {
      const opened = yield* generate(openaiFirst, {}, "0 seconds")
      const skipped = yield* generate(openaiFirst, {}, "0 seconds")
      const fallbacks = [opened, skipped].map(({ events }) => events.find((e) => e._tag === "Fallback"))
      // Before, the skip read "failure".
      expect(fallbacks.map((fallback) => fallback?._tag === "Fallback" && fallback.reason)).toEqual([
        "server_error",
        "circuit_open"
      ])
      expect(skipped.result?.warnings).toContain(
        "Fell back from openai/gpt-4.1-mini to anthropic/claude-haiku-4-5 after circuit_open."
      )
      expect(calls.map((call) => call.model)).toEqual(["gpt-4.1-mini", "claude-haiku-4-5", "claude-haiku-4-5"])
    }).pipe(Effect.provide(engine(
      { openai: [serverError], anthropic: [ok] },
      calls,
      { retryPolicy: noRetries, circuitBreaker: { threshold: 1, cooldown: "30 seconds" } }
    )))
  })

  it.effect("a probe that ends in a defect lets the next probe through", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      yield* generate(pinned, {}, "0 seconds")
      yield* TestClock.adjust("1 second")
      const probe = yield* Effect.exit(generate(pinned, { useFallback: false }, "0 seconds"))
      expect(Exit.isFailure(probe) && Cause.isDie(probe.cause)).toBe(true)
      // Before, the probe stayed out: every later generation skipped the model, whose circuit read half-open.
      const next = yield* generate(pinned, {}, "0 seconds")
      expect(calls.map((call) => call.at)).toEqual([0, 1_000, 1_000])
      expect(next.result?.isTemplate).toBe(false)
    }).pipe(Effect.provide(engine(
      { openai: [serverError, die(new Error("a bug in the client")), ok] },
      calls,
      { retryPolicy: noRetries, circuitBreaker: { threshold: 1, cooldown: "1 second" } }
    )))
  })
})

describe("RetryPolicy.config", () => {
  const read = (entries: ReadonlyArray<readonly [string, string]>) =>
    Effect.withConfigProvider(RetryPolicy.config, ConfigProvider.fromMap(new Map(entries)))

  it.effect("reads the stream's least throughput and what a refusal leads to, with the defaults when unset", () =>
    Effect.gen(function*() {
      const unset = yield* read([])
      expect([unset.minThroughput, unset.onRefusal]).toEqual([RetryPolicy.defaults.minThroughput, "hop"])
      const set = yield* read([["PLOT_ENGINE_MIN_TOKENS_PER_SECOND", "10"], ["PLOT_ENGINE_ON_REFUSAL", "fail"]])
      expect(set.minThroughput).toEqual({ tokensPerSecond: 10, window: RetryPolicy.defaults.minThroughput!.window })
      expect(set.onRefusal).toBe("fail")
      expect((yield* read([["PLOT_ENGINE_MIN_TOKENS_PER_SECOND", "0"]])).minThroughput).toBeUndefined()
      const bad = yield* Effect.flip(read([["PLOT_ENGINE_ON_REFUSAL", "retry"]]))
      expect(String(bad)).toContain("PLOT_ENGINE_ON_REFUSAL")
    }))

  it.effect("refuses budgets no generation could run under, naming the variable; 0 is no limit where the README says so", () =>
    Effect.gen(function*() {
      for (
        const [name, value] of [
          ["PLOT_ENGINE_MAX_ATTEMPTS", "0"],
          ["PLOT_ENGINE_MAX_ATTEMPTS", "-1"],
          ["PLOT_ENGINE_ATTEMPT_TIMEOUT", "-5 seconds"],
          ["PLOT_ENGINE_ATTEMPT_TIMEOUT", "0 seconds"],
          ["PLOT_ENGINE_DEADLINE", "0"],
          ["PLOT_ENGINE_FIRST_TOKEN_TIMEOUT", "-1 seconds"],
          ["PLOT_ENGINE_IDLE_TIMEOUT", "soon"]
        ] as const
      ) {
        // Before, each was taken: a negative duration read as zero (every attempt timed out at once).
        const refused = yield* Effect.flip(read([[name, value]]))
        expect([value, String(refused)]).toEqual([value, expect.stringContaining(name)])
      }
      // "0" for the stream's silence limits is no limit, as documented (before, only "0 seconds" was read).
      const noLimits = yield* read([["PLOT_ENGINE_FIRST_TOKEN_TIMEOUT", "0"], ["PLOT_ENGINE_IDLE_TIMEOUT", " 0 "]])
      expect([noLimits.firstTokenTimeout!, noLimits.idleTimeout!].map(Duration.toMillis)).toEqual([0, 0])
      expect(Duration.toMillis((yield* read([["PLOT_ENGINE_ATTEMPT_TIMEOUT", "1.5 seconds"]])).attemptTimeout)).toBe(
        1_500
      )
    }))
})
