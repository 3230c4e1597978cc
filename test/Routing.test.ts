/**
 * Several deployments of one model: a call goes to one of them (by weight), and a failure of that deployment (its
 * quota, its health, its key) moves the call to another at once, before the chain would retry or downgrade the
 * model. A failure of the request itself does not move it.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import * as Alerts from "../src/Alerts.js"
import type * as Deployments from "../src/Deployments.js"
import * as Attempt from "../src/generation/Attempt.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import { type Answer, type Call, fail, httpError, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"

const deployment = (id: string, weight = 1): Deployments.Deployment => ({
  id,
  dialect: "openai-responses",
  baseUrl: undefined,
  apiKey: Redacted.make(`sk-${id}`),
  headers: {},
  models: [{ model: "gpt-4.1" }],
  weight
})

const rateLimited = fail(httpError(429, {
  error: { message: "Rate limit reached for requests", type: "requests", param: null, code: "rate_limit_exceeded" }
}, { "retry-after": "60" }))
const serverError = fail(httpError(500, { error: { message: "The server had an error", type: "server_error" } }))
const badRequest = fail(httpError(400, { error: { message: "Invalid 'input'", type: "invalid_request_error" } }))

/** Two OpenAI deployments of gpt-4.1, each answering from its own script, their calls noted by deployment. */
const twoDeployments = (first: ReadonlyArray<Answer>, second: ReadonlyArray<Answer>, calls: Array<string>) => {
  const noted = (id: string, answers: ReadonlyArray<Answer>): Providers.ModelFactory => {
    const own: Array<Call> = []
    const models = scripted(answers, own)
    return (model, parameters) =>
      Effect.map(models(model, parameters), (service) =>
        ({
          ...service,
          generateText: (options: any) =>
            Effect.zipRight(Effect.sync(() => calls.push(id)), service.generateText(options))
        }) as typeof service)
  }
  return PlotGeneration.layer().pipe(
    Layer.provide(Providers.layerDeploymentModels([
      { deployment: deployment("org-a"), models: noted("org-a", first) },
      { deployment: deployment("org-b"), models: noted("org-b", second) }
    ])),
    Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject, sequel: sampleProject })),
    Layer.provide(ProviderRateLimiter.layerMemory()),
    Layer.provide(Alerts.layerDisabled)
  )
}

const request = {
  projectId: "novel",
  userPrompt: "What happens at the wedding?",
  provider: "openai" as const,
  model: "gpt-4.1"
}

/** A generation, the clock moved on far enough for any wait; the draw that picks a deployment pinned. */
const generate = (draw: number) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(PlotGeneration.generate(request, { useFallback: false }))
    yield* TestClock.adjust("10 minutes")
    return yield* Fiber.join(fiber)
  }).pipe(Effect.withRandom(Random.fixed([draw])))

/** A generation that needs no wait, on the clock as it stands. */
const generateNow = (draw: number) =>
  PlotGeneration.generate(request, { useFallback: false }).pipe(Effect.withRandom(Random.fixed([draw])))

describe("routing across the deployments of a model", () => {
  it.effect("a 429 on one deployment moves the call to the other at once", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      const result = yield* generate(0.1)
      expect(calls).toEqual(["org-a", "org-b"])
      expect([result.model, result.isTemplate, result.durationMs, result.retryCount]).toEqual(["gpt-4.1", false, 0, 1])
      // The result names the deployment that answered, and each billed attempt its own (the 429 billed nothing).
      expect(result.deployment).toBe("org-b")
      expect(result.attempts.map((attempt) => [attempt.deployment, attempt.outcome])).toEqual([["org-b", "success"]])
    }).pipe(Effect.provide(twoDeployments([rateLimited], [text(sampleOutlineJson)], calls)))
  })

  it.effect("so does a 500; the other deployment is drawn first when the draw falls on it", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      const result = yield* generate(0.9)
      expect(calls).toEqual(["org-b", "org-a"])
      expect(result.durationMs).toBe(0)
      expect(result.deployment).toBe("org-a")
    }).pipe(Effect.provide(twoDeployments([text(sampleOutlineJson)], [serverError], calls)))
  })

  it.effect("a deployment that went silent is not called again, even when the other fails too and the model is retried", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      const result = yield* generate(0.1)
      // org-a silent for the attempt's 60 s; org-b at once, a 429 asking for 60 s; the retry goes to org-b alone.
      expect(calls).toEqual(["org-a", "org-b", "org-b"])
      expect([result.isTemplate, result.durationMs]).toEqual([false, 120_000])
    }).pipe(Effect.provide(twoDeployments([{ _tag: "Hang" }], [rateLimited, text(sampleOutlineJson)], calls)))
  })

  it.effect("a bad request fails on the first deployment: another would refuse it too", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      const error = yield* Effect.flip(generate(0.1))
      expect(error._tag).toBe("InvalidRequestError")
      expect(calls).toEqual(["org-a"])
    }).pipe(Effect.provide(twoDeployments([badRequest], [text(sampleOutlineJson)], calls)))
  })

  it.effect("both deployments failing: each of the chain's retries tries them both, within one attempt budget", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      const error = yield* Effect.flip(generate(0.1))
      expect(error._tag).toBe("ServerError")
      // The default policy retries a server error 3 times: each retry tries both deployments, at once one after the
      // other (8 attempts of the budget of 12).
      expect(calls).toEqual(["org-a", "org-b", "org-a", "org-b", "org-a", "org-b", "org-a", "org-b"])
    }).pipe(Effect.provide(twoDeployments([serverError], [serverError], calls)))
  })

  it.effect("a project's repeat generations go to the deployment that holds its prompt cache, while it lives", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      yield* generateNow(0.9) // drawn to org-b
      yield* generateNow(0.1) // a draw for org-a, but org-b holds the project's cache
      yield* TestClock.adjust("5 minutes") // the cache (5 minutes) is gone: the draw decides again
      yield* generateNow(0.1)
      expect(calls).toEqual(["org-b", "org-b", "org-a"])
    }).pipe(Effect.provide(twoDeployments([text(sampleOutlineJson)], [text(sampleOutlineJson)], calls)))
  })

  it.effect("a failing home loses the project: the call moves on, and the next generation stays where it answered", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      yield* generateNow(0.9) // org-b answers, and holds the cache
      yield* generateNow(0.9) // org-b fails now: org-a answers, and holds the cache
      yield* generateNow(0.9)
      expect(calls).toEqual(["org-b", "org-b", "org-a", "org-a"])
    }).pipe(Effect.provide(twoDeployments([text(sampleOutlineJson)], [text(sampleOutlineJson), serverError], calls)))
  })

  it.effect("a deployment its limiter would keep the call waiting on (a 429's pause) is passed over for one that admits it now", () => {
    const calls: Array<string> = []
    return Effect.gen(function*() {
      yield* generateNow(0.1) // org-a answers 429 (a minute's pause on its key): org-b answers
      // Another project (no cache to follow), a draw for org-a: org-a's key is paused, org-b admits at once.
      const other = yield* PlotGeneration.generate({ ...request, projectId: "sequel" }, { useFallback: false }).pipe(
        Effect.withRandom(Random.fixed([0.1]))
      )
      expect(calls).toEqual(["org-a", "org-b", "org-b"])
      expect([other.retryCount, other.durationMs]).toEqual([0, 0])
    }).pipe(Effect.provide(twoDeployments([rateLimited, text(sampleOutlineJson)], [text(sampleOutlineJson)], calls)))
  })

  it("a draw falls on each route by its weight; a standby is drawn only when it is all that is left", () => {
    const routes = [{ id: "a", weight: 1 }, { id: "b", weight: 3 }]
    expect([0, 0.24, 0.25, 0.99].map((draw) => Attempt.pickByWeight(routes, draw).id)).toEqual(["a", "a", "b", "b"])
    const withStandby = [{ id: "standby", weight: 0 }, { id: "a", weight: 1 }]
    expect([0, 0.5, 0.99].map((draw) => Attempt.pickByWeight(withStandby, draw).id)).toEqual(["a", "a", "a"])
    expect(Attempt.pickByWeight([{ id: "standby", weight: 0 }], 0.5).id).toBe("standby")
  })
})
