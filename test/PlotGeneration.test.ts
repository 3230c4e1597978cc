import * as LanguageModel from "@effect/ai/LanguageModel"
import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import * as Alerts from "../src/Alerts.js"
import { ContentExcerpt, type GenerationEvent, type PlotRequestInput, ProjectContext } from "../src/Domain.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as PromptBuilder from "../src/PromptBuilder.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import * as TemplateGenerator from "../src/TemplateGenerator.js"
import * as TokenCount from "../src/TokenCount.js"
import { type Answer, type Call, fail, httpError, sampleOutlineJson, scripted, text } from "./utils/FakeModel.js"
import { sampleProject } from "./utils/fixtures.js"

const serverError = httpError(500, {
  error: { message: "The server had an error", type: "server_error", param: null, code: null }
})
const authError = httpError(401, {
  error: { message: "Incorrect API key provided", type: "invalid_request_error", param: null, code: "invalid_api_key" }
})

/** The engine over `models` and the sample project, behind `limiter` (none by default). */
const engineOver = (
  models: Layer.Layer<Providers.Providers>,
  limiter: Layer.Layer<ProviderRateLimiter.ProviderRateLimiter> = ProviderRateLimiter.layerUnlimited
) =>
  PlotGeneration.layer().pipe(
    Layer.provide(models),
    Layer.provide(ProjectContextStore.layerMemory({ "lighthouse-keeper": sampleProject })),
    Layer.provide(limiter),
    Layer.provide(Alerts.layerDisabled)
  )

/** The engine over a scripted OpenAI model and the sample project; `calls` records what the model was sent. */
const engine = (answers: ReadonlyArray<Answer>, calls: Array<Call> = []) =>
  engineOver(Providers.layerModels({ openai: (model, parameters) => scripted(answers, calls)(model, parameters) }))

const request: PlotRequestInput = {
  projectId: "lighthouse-keeper",
  userPrompt: "What happens next?",
  targetWordCount: 120
}

const generate = (input: PlotRequestInput = request, options?: { useFallback?: boolean }) =>
  Effect.flatMap(PlotGeneration.PlotGeneration, (engine) => engine.generate(input, options))

/** A logger that keeps every line it is given, with its annotations. */
const capturedLogLines = () => {
  const lines: Array<{ readonly message: unknown; readonly annotations: Record<string, unknown> }> = []
  const capture = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, message }) => {
      lines.push({ message, annotations: Object.fromEntries(HashMap.toEntries(annotations)) })
    })
  )
  return { capture, lines }
}

/** Runs an effect that sleeps in virtual time to its end: forked, the clock moved past every delay, joined. */
const settled = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* TestClock.adjust("10 minutes")
    return yield* Fiber.join(fiber)
  })

describe("PlotGeneration.generate", () => {
  it.effect("returns the parsed plot with usage, cost and the model that wrote it", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const result = yield* generate()
      expect(result.isTemplate).toBe(false)
      // A short, plain request is low complexity: the fast OpenAI model.
      // Without a deployments file, the provider's own deployment, named after it.
      expect([result.provider, result.model, result.deployment]).toEqual(["openai", "gpt-4.1-mini", "openai"])
      expect(result.reasoning).toBe("Fast and cost-effective for simple tasks")
      expect(result.outline.title).toBe("The Lamp Beneath")
      expect(result.usage).toMatchObject({ inputTokens: 1_000, outputTokens: 200, totalTokens: 1_200 })
      // gpt-4.1-mini at $0.40 in and $1.60 out per million tokens
      expect(result.estimatedCostUsd).toBeCloseTo(0.00072, 10)
      expect(result.preCallEstimateUsd).toBeGreaterThan(0)
      expect(result.retryCount).toBe(0)
      expect(calls).toHaveLength(1)
      expect(calls[0]!.parameters).toMatchObject({ maxOutputTokens: 1_024, temperature: 0.8 })
      expect(calls[0]!.parameters.promptCacheKey).toBe(PromptBuilder.promptCacheKey("lighthouse-keeper"))
    }).pipe(Effect.provide(engine([text(sampleOutlineJson, { inputTokens: 1_000, outputTokens: 200 })], calls)))
  })

  it.effect("falls back to template on persistent failure (the original test)", () =>
    Effect.gen(function*() {
      const result = yield* settled(generate(request, { useFallback: true }))
      expect(result.isTemplate).toBe(true)
      expect(result.provider).toBe("template")
      expect(result.deployment).toBeUndefined()
      expect(result.warnings.some((w) => w.includes("generated from a template"))).toBe(true)
      expect(result.warnings).toContain(TemplateGenerator.templateWarning)
    }).pipe(Effect.provide(engine([fail(serverError)]))))

  it.effect("annotates every log line of a generation, the model's own too, with the request, project, model and deployment", () => {
    const { capture, lines } = capturedLogLines()
    const script = scripted([fail(serverError), text(sampleOutlineJson)])
    const loggingModel = (model: string, parameters: Providers.ModelParameters) =>
      Effect.map(script(model, parameters), (languageModel) => ({
        ...languageModel,
        generateText: ((options: Parameters<typeof languageModel.generateText>[0]) =>
          Effect.zipRight(
            Effect.logInfo("model called"),
            languageModel.generateText(options)
          )) as typeof languageModel.generateText
      }))
    return Effect.gen(function*() {
      const result = yield* settled(generate())
      const modelLines = lines.filter((line) => Array.isArray(line.message) && line.message[0] === "model called")
      expect(modelLines).toHaveLength(2)
      for (const line of modelLines) {
        expect(line.annotations).toEqual({
          requestId: result.requestId,
          projectId: "lighthouse-keeper",
          provider: "openai",
          model: result.model,
          deployment: "openai"
        })
      }
      expect(result.retryCount).toBe(1)
    }).pipe(
      Effect.provide(
        engineOver(Providers.layerModels({ openai: loggingModel }))
      ),
      Effect.provide(capture)
    )
  })

  it.effect("logs no runtime line for a failed attempt, even at the debug level (the error is the engine's to tell)", () => {
    const { capture, lines } = capturedLogLines()
    return Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const result = yield* settled(engineService.generate(request))
      expect(result.retryCount).toBe(1)
      const streamed = yield* settled(Stream.runCollect(engineService.generateStream(request)))
      expect(Chunk.last(streamed).pipe(Option.map((event) => event._tag))).toStrictEqual(Option.some("Completed"))
      // A failed call's fiber ends with the provider's error; its caller reads it. The runtime's own line for a fiber
      // that ends failed ("Fiber terminated with an unhandled error", at debug level) is not written for it.
      const runtimeLines = lines.filter((line) => JSON.stringify(line.message).includes("unhandled error"))
      expect(runtimeLines).toEqual([])
    }).pipe(
      Effect.provide(engine([fail(serverError), text(sampleOutlineJson), fail(serverError), text(sampleOutlineJson)])),
      Effect.provide(capture),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )
  })

  it.effect("calls the model with the tracer off when no tracer is installed, and on when one is", () => {
    const seen: Array<[string, boolean]> = []
    const script = scripted([text(sampleOutlineJson)])
    const tracerWatchingModel = (model: string, parameters: Providers.ModelParameters) =>
      Effect.map(script(model, parameters), (languageModel) => ({
        ...languageModel,
        generateText: ((options: Parameters<typeof languageModel.generateText>[0]) =>
          FiberRef.get(FiberRef.currentTracerEnabled).pipe(
            Effect.tap((enabled) =>
              seen.push(["generateText", enabled])
            ),
            Effect.zipRight(languageModel.generateText(options))
          )) as typeof languageModel.generateText,
        streamText: ((options: Parameters<typeof languageModel.streamText>[0]) =>
          Stream.concat(
            Stream.fromEffect(
              FiberRef.get(FiberRef.currentTracerEnabled).pipe(
                Effect.tap((enabled) => seen.push(["streamText", enabled]))
              )
            ).pipe(Stream.drain),
            languageModel.streamText(options)
          )) as typeof languageModel.streamText
      }))
    // Any tracer but the default one (this one makes the default's spans).
    const defaultTracer = Effect.runSync(Effect.tracer)
    const tracer = Tracer.make({ span: (...args) => defaultTracer.span(...args), context: (f) => f() })
    return Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      yield* engineService.generate(request)
      yield* Stream.runDrain(engineService.generateStream(request))
      yield* engineService.generate(request).pipe(Effect.withTracer(tracer))
      yield* Stream.runDrain(engineService.generateStream(request)).pipe(Effect.withTracer(tracer))
      expect(seen).toEqual([["generateText", false], ["streamText", false], ["generateText", true], [
        "streamText",
        true
      ]])
    }).pipe(
      Effect.provide(
        engineOver(Providers.layerModels({ openai: tracerWatchingModel }))
      )
    )
  })

  it.effect("annotates the log lines of a streamed call, the model's own as it streams, and tells its headers", () => {
    const { capture, lines } = capturedLogLines()
    const script = scripted([text(sampleOutlineJson)])
    const observed: Array<unknown> = []
    const loggingModel = (model: string, parameters: Providers.ModelParameters) =>
      Effect.map(script(model, parameters), (languageModel) => ({
        ...languageModel,
        streamText: ((options: Parameters<typeof languageModel.streamText>[0]) =>
          Stream.concat(
            Stream.fromEffect(
              Effect.zipRight(Effect.logInfo("model streaming"), Providers.reportHeaders({ "x-test": "1" }))
            ).pipe(Stream.drain),
            languageModel.streamText(options)
          )) as typeof languageModel.streamText
      }))
    return Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const events = Chunk.toArray(yield* Stream.runCollect(engineService.generateStream(request)))
      const last = events.at(-1)!
      const modelLines = lines.filter((line) => Array.isArray(line.message) && line.message[0] === "model streaming")
      expect(modelLines).toHaveLength(1)
      expect(modelLines[0]!.annotations).toEqual({
        requestId: last._tag === "Completed" && last.result.requestId,
        projectId: "lighthouse-keeper",
        provider: "openai",
        model: last._tag === "Completed" && last.result.model,
        deployment: "openai"
      })
      expect(observed).toEqual([{ "x-test": "1" }])
    }).pipe(
      Effect.provide(
        engineOver(
          Providers.layerModels({ openai: loggingModel }),
          // The unlimited limiter, hearing the headers the engine hands it.
          Layer.effect(
            ProviderRateLimiter.ProviderRateLimiter,
            Effect.map(ProviderRateLimiter.ProviderRateLimiter, (limiter) => ({
              ...limiter,
              observe: (_target, headers) => Effect.sync(() => observed.push(headers))
            }))
          ).pipe(Layer.provide(ProviderRateLimiter.layerUnlimited))
        )
      ),
      Effect.provide(capture)
    )
  })

  it.effect("annotates the engine's own lines about a generation with its request and project (the template's warning)", () => {
    const { capture, lines } = capturedLogLines()
    return Effect.gen(function*() {
      const result = yield* settled(generate())
      expect(result.isTemplate).toBe(true)
      const warning = lines.find((line) =>
        Array.isArray(line.message) && line.message[0] === "Generation failed; using the template fallback"
      )
      expect(warning?.annotations).toMatchObject({
        requestId: result.requestId,
        projectId: "lighthouse-keeper",
        errorType: "server_error"
      })
    }).pipe(Effect.provide(engine([fail(serverError)])), Effect.provide(capture))
  })

  it.effect("falls back by default", () =>
    Effect.gen(function*() {
      expect((yield* settled(generate())).isTemplate).toBe(true)
    }).pipe(Effect.provide(engine([fail(serverError)]))))

  it.effect("fails with the typed error when fallback is off", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(settled(generate(request, { useFallback: false })))
      expect(error._tag).toBe("ServerError")
    }).pipe(Effect.provide(engine([fail(serverError)]))))

  it.effect("never hides an auth failure behind a template", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(generate())
      expect(error._tag).toBe("AuthError")
    }).pipe(Effect.provide(engine([fail(authError)]))))

  it.effect("rejects a bad request before calling any model", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const error = yield* Effect.flip(generate({ ...request, targetWordCount: 5 }))
      expect(error._tag === "RequestValidationError" && error.field).toBe("targetWordCount")
      expect(calls).toHaveLength(0)
    }).pipe(Effect.provide(engine([text(sampleOutlineJson)], calls)))
  })

  it.effect("fails for an unknown project", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(generate({ ...request, projectId: "missing" }))
      expect(error._tag).toBe("ProjectNotFoundError")
    }).pipe(Effect.provide(engine([text(sampleOutlineJson)]))))

  it.effect("fails for a provider that is not configured", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(generate({ ...request, provider: "anthropic" }))
      expect(error._tag).toBe("ProviderNotConfiguredError")
      // Both ways to configure it, the key's variable and a deployments file's dialect (it named the variable only).
      expect(error.message).toBe(
        "The anthropic provider is not configured: set ANTHROPIC_API_KEY, or give a deployment of dialect anthropic-messages"
      )
    }).pipe(Effect.provide(engine([text(sampleOutlineJson)]))))

  it.effect("sends a pinned model and its parameters", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const result = yield* generate({ ...request, provider: "openai", model: "gpt-5", temperature: 0.3 })
      expect(result.model).toBe("gpt-5")
      // A reasoning model: no temperature, a medium effort for an outline, and room to reason before it writes.
      expect(calls[0]).toMatchObject({
        model: "gpt-5",
        parameters: { maxOutputTokens: 1_024 + 16_384, temperature: undefined, reasoningEffort: "medium" }
      })
    }).pipe(Effect.provide(engine([text(sampleOutlineJson)], calls)))
  })

  it.effect("requires a provider with a pinned model", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(generate({ ...request, model: "gpt-5" }))
      expect(error._tag === "RequestValidationError" && error.field).toBe("provider")
    }).pipe(Effect.provide(engine([text(sampleOutlineJson)]))))

  it.effect("gives an unknown price as an unknown cost, not 0", () =>
    Effect.gen(function*() {
      const result = yield* generate({ ...request, provider: "openai", model: "gpt-9-experimental" })
      expect(result.estimatedCostUsd).toBeNull()
    }).pipe(Effect.provide(engine([text(sampleOutlineJson)]))))

  it.effect("measures its duration on the Clock", () =>
    Effect.gen(function*() {
      const slow = Providers.layerModels({
        openai: (model, parameters) =>
          Effect.map(scripted([text(sampleOutlineJson)])(model, parameters), (lm) =>
            ({
              ...lm,
              generateText: (options: any) => Effect.zipRight(Effect.sleep("2500 millis"), lm.generateText(options))
            }) as LanguageModel.Service)
      })
      const fiber = yield* generate().pipe(
        Effect.provide(
          engineOver(slow)
        ),
        Effect.fork
      )
      yield* TestClock.adjust("2500 millis")
      const result = yield* Fiber.join(fiber)
      expect(result.durationMs).toBe(2_500)
    }))
})

/** An event as the tests list them: a stage's progress by its stage, any other by its tag. */
const tagOf = (event: GenerationEvent) => event._tag === "Progress" ? event.stage : event._tag

/** What `generateStream` tells of a generation of the sample outline, in order. */
const toldInOrder = [
  "retrieving_context",
  "selecting_model",
  "building_prompt",
  "ModelSelected",
  "generating",
  "OutlineHeading",
  "TextDelta",
  "ActStarted",
  "TextDelta",
  "BeatWritten",
  "TextDelta",
  "BeatWritten",
  "TextDelta",
  "parsing",
  "Completed"
]

describe("PlotGeneration.generateStream", () => {
  it.effect("reports every stage in order with rising progress, the outline as it completes, then the result", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const events = Chunk.toArray(yield* Stream.runCollect(engineService.generateStream(request)))
      expect(events.map(tagOf)).toEqual(toldInOrder)
      const progress = events.flatMap((e) => (e._tag === "Progress" ? [e.progress] : []))
      expect(progress).toEqual([...progress].sort((a, b) => a - b))
      const last = events.at(-1)!
      expect(last._tag === "Completed" && last.result.outline.title).toBe("The Lamp Beneath")
      // The prose is the result's Markdown, piece by piece; never the model's JSON.
      const prose = events.flatMap((e) => (e._tag === "TextDelta" ? [e.delta] : [])).join("")
      expect(last._tag === "Completed" && prose).toBe(last._tag === "Completed" && last.result.content)
      expect(prose).not.toContain("{")
      expect(events.find((e) => e._tag === "BeatWritten")).toMatchObject({
        act: 1,
        beat: 1,
        summary: "Mara Quinn climbs to the lamp room.",
        characters: ["Mara Quinn"],
        location: "Saltmarsh Light"
      })
    }).pipe(Effect.provide(engine([text(sampleOutlineJson)]))))

  it.effect("tells a reader slower than the generation every event once, in order", () =>
    Effect.gen(function*() {
      // The first call fails at once (the retry is told before the reader's first take) or after 15 s (told while
      // the reader, ten seconds an event, still holds the first five, with the outline's first chunk right after
      // it). effect 3.22's mailbox, unpatched, told that second `Retrying` twice when single events were offered
      // one by one.
      for (const firstFailure of [fail(serverError), fail(serverError, 15_000)]) {
        const told = yield* Effect.gen(function*() {
          const engineService = yield* PlotGeneration.PlotGeneration
          const reading = yield* engineService.generateStream(request).pipe(
            Stream.mapEffect((event) => Effect.as(Effect.sleep("10 seconds"), event)),
            Stream.runCollect,
            Effect.fork
          )
          yield* TestClock.adjust("10 minutes")
          return Chunk.toArray(yield* Fiber.join(reading)).map(tagOf)
        }).pipe(Effect.provide(engine([firstFailure, text(sampleOutlineJson)])))
        expect(told).toEqual([...toldInOrder.slice(0, 5), "Retrying", ...toldInOrder.slice(5)])
      }
    }))

  it.effect("handles an error event mid-stream like any failure: no partial text in the result", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const events = Chunk.toArray(yield* settled(Stream.runCollect(engineService.generateStream(request))))
      const last = events.at(-1)!
      expect(last._tag === "Completed" && last.result.isTemplate).toBe(true)
      expect(last._tag === "Completed" && last.result.content).not.toContain("PARTIAL")
    }).pipe(Effect.provide(engine([{
      _tag: "StreamError",
      partial: "PARTIAL {\"title\":",
      event: { type: "error", error: { type: "overloaded_error", message: "Overloaded" } }
    }]))))

  it.effect("ends with the typed failure and no Completed event when fallback is off", () =>
    Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const seen: Array<string> = []
      const error = yield* Effect.flip(settled(
        Stream.runForEach(engineService.generateStream(request, { useFallback: false }), (e) =>
          Effect.sync(() => seen.push(e._tag)))
      ))
      expect(error._tag).toBe("ServerError")
      expect(seen).not.toContain("Completed")
    }).pipe(Effect.provide(engine([fail(serverError)]))))
})

describe("PlotGeneration.generateStream truncation", () => {
  it.effect("treats a stream that ends without finishing as a server failure", () =>
    Effect.gen(function*() {
      const truncated = Providers.layerModels({
        openai: () =>
          LanguageModel.make({
            generateText: () => Effect.succeed([]),
            streamText: () => Stream.make({ type: "text-delta" as const, id: "t", delta: sampleOutlineJson })
          })
      })
      const engineService = yield* PlotGeneration.PlotGeneration.pipe(
        Effect.provide(
          engineOver(truncated)
        )
      )
      const error = yield* Effect.flip(
        settled(Stream.runDrain(engineService.generateStream(request, { useFallback: false })))
      )
      expect(error._tag === "ServerError" && error.detail).toBe("the stream ended before the response was complete")
    }))
})

describe("PlotGeneration model selection and context budget", () => {
  const chapters = Array.from(
    { length: 30 },
    (_, i) =>
      new ContentExcerpt({
        title: `Chapter ${i + 1}`,
        text: `Chapter ${i + 1}. ${"Mara kept the light. ".repeat(1_500)}`
      })
  )
  const hugeProject = new ProjectContext({ ...sampleProject, previousContent: chapters })

  const engineWith = (
    answers: ReadonlyArray<Answer>,
    calls: Array<Call>,
    options: PlotGeneration.Options,
    configured: ReadonlyArray<"openai" | "anthropic"> = ["openai", "anthropic"]
  ) =>
    PlotGeneration.layer(options).pipe(
      Layer.provide(Providers.layerModels(Object.fromEntries(configured.map((p) => [p, scripted(answers, calls)])))),
      Layer.provide(ProjectContextStore.layerMemory({ "lighthouse-keeper": sampleProject, huge: hugeProject })),
      Layer.provide(ProviderRateLimiter.layerUnlimited),
      Layer.provide(Alerts.layerDisabled)
    )

  it.effect("sends a complex, long request to the premium model of a configured provider", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const result = yield* generate({
        ...request,
        userPrompt: "A detailed betrayal with nuanced character development",
        targetWordCount: 2_500
      })
      expect([result.provider, result.model]).toEqual(["openai", "gpt-5"])
      expect(result.reasoning).toBe("High complexity requires best model (anthropic is not configured)")
      expect(calls[0]!.model).toBe("gpt-5")
    }).pipe(Effect.provide(engineWith([text(sampleOutlineJson)], calls, {}, ["openai"])))
  })

  it.effect("cuts a project larger than the budget, sends the cut prompt, and warns", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const engineService = yield* PlotGeneration.PlotGeneration
      const events = Chunk.toArray(
        yield* Stream.runCollect(engineService.generateStream({ ...request, projectId: "huge" }))
      )
      const warning = events.find((e) => e._tag === "Warning")
      expect(warning?._tag === "Warning" && warning.message).toMatch(
        /^The project context was cut to fit \d+ tokens: dropped \d+ of 30 previous chapters/
      )
      const last = events.at(-1)
      expect(last?._tag === "Completed" && last.result.warnings[0]).toBe(warning?._tag === "Warning" && warning.message)
      const sent = JSON.stringify(calls[0]!.prompt)
      expect(sent).toContain("Chapter 30")
      expect(sent).not.toContain("Chapter 1.")
      expect(TokenCount.estimateTokens(sent)).toBeLessThan(12_000)
    }).pipe(Effect.provide(engineWith([text(sampleOutlineJson)], calls, { maxContextTokens: 8_000 })))
  })

  it.effect("does not re-tokenize an unchanged project: a second request counts only the writer's words", () => {
    const tokenized: Array<string> = []
    const tokenCount = () => (text: string) => {
      tokenized.push(text)
      return TokenCount.estimateTokens(text)
    }
    return Effect.gen(function*() {
      yield* generate()
      const first = tokenized.length
      yield* generate({ ...request, userPrompt: "And after that?" })
      expect(first).toBeGreaterThan(10)
      // The rest of its prompt (system, frame, project) is remembered from the first.
      expect(tokenized.slice(first)).toEqual([`"And after that?"`])
    }).pipe(Effect.provide(engineWith([text(sampleOutlineJson)], [], { tokenCount })))
  })
})

describe("PlotGeneration token calibration", () => {
  it.effect("corrects the Anthropic estimate with the usage Claude reports", () =>
    Effect.gen(function*() {
      const anthropicRequest = { ...request, provider: "anthropic" as const }
      const first = yield* generate(anthropicRequest)
      const second = yield* generate(anthropicRequest)
      // Claude reported far fewer input tokens than the o200k count with its margin: the next estimate is lower.
      expect(second.preCallEstimateUsd!).toBeLessThan(first.preCallEstimateUsd!)
    }).pipe(Effect.provide(
      engineOver(
        Providers.layerModels({
          anthropic: scripted([text(sampleOutlineJson, { inputTokens: 100, outputTokens: 50 })])
        })
      )
    )))
})

describe("PlotGeneration through the rate limiter", () => {
  it.effect("admits each attempt through the limiter, and a provider 429 pauses the key for everyone", () => {
    const calls: Array<Call> = []
    const rateLimited = fail(
      httpError(429, {
        error: { message: "Rate limit reached", type: "requests", param: null, code: "rate_limit_exceeded" }
      }, { "retry-after-ms": "20000" })
    )
    return Effect.gen(function*() {
      const first = yield* Effect.fork(generate())
      const second = yield* Effect.fork(generate())
      yield* TestClock.adjust("10 minutes")
      yield* Fiber.join(first)
      yield* Fiber.join(second)
      // The second generation asked during the pause: it waits for the gate like the first one's retry, then goes
      // at the limit's pace (600 a minute cut to 540 by the 429: 111 ms a request), the bucket having been emptied
      // by the 429 as the provider's was.
      expect(calls.map((c) => c.at).slice(0, 2)).toEqual([0, 20_000])
      expect(calls[2]?.at).toBeCloseTo(20_000 + 60_000 / 540, 3)
    }).pipe(Effect.provide(
      engineOver(
        Providers.layerModels({ openai: scripted([rateLimited, text(sampleOutlineJson)], calls) }),
        ProviderRateLimiter.layerMemory({
          quotas: { openai: { requestsPerMinute: 600, tokensPerMinute: 1_000_000, maxConcurrent: 1 } }
        })
      )
    ))
  })

  it.effect("refuses at once, without a template, a generation whose wait for the quota leaves its call no time", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      // Two requests a minute, one back every 30 s: the third would be admitted at 30 s, but a generation with a
      // 30 s deadline waits for the quota only until 22.5 s (a quarter of the deadline is left for the call).
      const fibers = yield* Effect.forEach(
        [1, 2, 3],
        () => Effect.fork(Effect.either(Effect.zip(generate(request), Clock.currentTimeMillis)))
      )
      yield* TestClock.adjust("30 seconds")
      const [first, second, third] = yield* Fiber.joinAll(fibers)
      expect([first!._tag, second!._tag]).toEqual(["Right", "Right"])
      const error = Either.getLeft(third!).pipe(Option.getOrThrow)
      expect(error._tag === "RateLimitError" && [error.local, error.retryAfterMs]).toEqual([true, 30_000])
      expect(error.message).toContain("saturated")
      expect(calls.map((c) => c.at)).toEqual([0, 0])
      // It reserved nothing: at 30 s the bucket holds the request that came back.
      const [snapshot] = yield* Effect.flatMap(ProviderRateLimiter.ProviderRateLimiter, (limiter) => limiter.snapshot)
      expect(snapshot?.available.rpm).toBe(1)
    }).pipe(Effect.provide(
      PlotGeneration.layer({ retryPolicy: { ...RetryPolicy.defaults, deadline: "30 seconds" } }).pipe(
        Layer.provide(
          Providers.layerModels({ openai: scripted([text(sampleOutlineJson), text(sampleOutlineJson)], calls) })
        ),
        Layer.provide(ProjectContextStore.layerMemory({ "lighthouse-keeper": sampleProject })),
        Layer.provideMerge(
          ProviderRateLimiter.layerMemory({
            quotas: { openai: { requestsPerMinute: 2, tokensPerMinute: 1_000_000, maxConcurrent: 10 } }
          })
        ),
        Layer.provide(Alerts.layerDisabled)
      )
    ))
  })

  it.effect("fails a call that does not answer at its attempt timeout, exactly then", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      const fiber = yield* Effect.fork(Effect.flip(generate(request, { useFallback: false })))
      yield* TestClock.adjust("9999 millis")
      expect(yield* Fiber.poll(fiber)).toEqual(Option.none())
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(fiber)
      expect(error._tag).toBe("TimeoutError")
      expect(error.message).toContain("no answer within the attempt timeout of 10s")
      expect(calls).toHaveLength(1)
    }).pipe(Effect.provide(
      PlotGeneration.layer({ retryPolicy: { ...RetryPolicy.defaults, maxAttempts: 1, attemptTimeout: "10 seconds" } })
        .pipe(
          Layer.provide(Providers.layerModels({ openai: scripted([{ _tag: "Hang" }], calls) })),
          Layer.provide(ProjectContextStore.layerMemory({ "lighthouse-keeper": sampleProject })),
          Layer.provide(ProviderRateLimiter.layerUnlimited),
          Layer.provide(Alerts.layerDisabled)
        )
    ))
  })

  it.effect("ends a generation queued for a permit when its call would have no time left, without sending it", () => {
    const calls: Array<Call> = []
    return Effect.gen(function*() {
      // The first generation holds the only permit (its call hangs); the second, queued behind it, is refused at
      // 22.5 s (its 30 s deadline less the quarter left for the call), by the limiter, and is never sent.
      const first = yield* Effect.fork(generate(request, { useFallback: false }))
      yield* Effect.yieldNow()
      const second = yield* Effect.fork(Effect.flip(generate(request)))
      yield* TestClock.adjust("22499 millis")
      expect(yield* Fiber.poll(second)).toEqual(Option.none())
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(second)
      expect(error._tag === "RateLimitError" && error.local).toBe(true)
      expect(error.message).toContain("every permit is taken")
      expect(calls).toHaveLength(1)
      yield* Fiber.interrupt(first)
    }).pipe(Effect.provide(
      PlotGeneration.layer({ retryPolicy: { ...RetryPolicy.defaults, deadline: "30 seconds" } }).pipe(
        Layer.provide(Providers.layerModels({ openai: scripted([{ _tag: "Hang" }], calls) })),
        Layer.provide(ProjectContextStore.layerMemory({ "lighthouse-keeper": sampleProject })),
        Layer.provide(
          ProviderRateLimiter.layerMemory({
            quotas: { openai: { requestsPerMinute: 600, tokensPerMinute: 1_000_000, maxConcurrent: 1 } }
          })
        ),
        Layer.provide(Alerts.layerDisabled)
      )
    ))
  })
})
