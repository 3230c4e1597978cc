/**
 * What the real clients are sent for structured output (by the engine too), and that their models are made once.
 */
import type * as LanguageModel from "@effect/ai/LanguageModel"
import * as Tool from "@effect/ai/Tool"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Alerts from "../src/Alerts.js"
import { PlotOutline } from "../src/Domain.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as ResponseParser from "../src/ResponseParser.js"
import { sampleProject } from "./utils/fixtures.js"

/** An HTTP client that keeps every JSON body it is sent and answers 400 (only the requests matter here). */
const capturing = (bodies: Array<Record<string, any>>) =>
  HttpClient.make((request) => {
    if (request.body._tag === "Uint8Array") bodies.push(JSON.parse(new TextDecoder().decode(request.body.body)))
    return Effect.succeed(HttpClientResponse.fromWeb(
      request,
      // Each provider's own 400, so that the engine fails at once instead of retrying what it cannot read.
      new Response(
        JSON.stringify(
          request.url.includes("/messages")
            ? { type: "error", error: { type: "invalid_request_error", message: "captured" } }
            : { error: { message: "captured", type: "invalid_request_error" } }
        ),
        { status: 400 }
      )
    ))
  })

const providers = (bodies: Array<Record<string, any>>) =>
  Providers.make({
    openai: { apiKey: Redacted.make("sk-test-0123456789") },
    anthropic: { apiKey: Redacted.make("sk-ant-test-0123456789") }
  }).pipe(Effect.provideService(HttpClient.HttpClient, capturing(bodies)))

const structuredCall = (model: LanguageModel.Service) =>
  Effect.ignore(
    model.generateText({
      prompt: "Outline it.",
      toolkit: ResponseParser.outlineToolkit,
      toolChoice: { tool: "plot_outline" },
      disableToolCallResolution: true
    })
  )

describe("Providers", () => {
  it.scoped("forces the outline tool with PlotOutline's JSON Schema on both providers (strict on OpenAI)", () =>
    Effect.gen(function*() {
      const bodies: Array<Record<string, any>> = []
      const service = yield* providers(bodies)
      yield* structuredCall(yield* service.languageModel("openai", "gpt-4.1", { maxOutputTokens: 500 }))
      yield* structuredCall(yield* service.languageModel("anthropic", "claude-sonnet-4-5", { maxOutputTokens: 500 }))
      const schema = Tool.getJsonSchemaFromSchemaAst(PlotOutline.ast)
      const description = Tool.getDescriptionFromSchemaAst(PlotOutline.ast)
      expect(bodies[0]!.tools).toEqual([{
        type: "function",
        name: "plot_outline",
        description,
        parameters: schema,
        strict: true
      }])
      expect(bodies[0]!.tool_choice).toEqual({ type: "function", name: "plot_outline" })
      expect(bodies[0]!.max_output_tokens).toBe(500)
      expect(bodies[1]!.tools).toEqual([{ name: "plot_outline", description, input_schema: schema }])
      expect(bodies[1]!.tool_choice).toMatchObject({ type: "tool", name: "plot_outline" })
    }))

  it.scoped("the engine forces the outline tool on every call, streamed or not, on both providers", () =>
    Effect.gen(function*() {
      const bodies: Array<Record<string, any>> = []
      const engine = yield* PlotGeneration.make().pipe(
        Effect.provideService(Providers.Providers, yield* providers(bodies)),
        Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
        Effect.provide(ProviderRateLimiter.layerUnlimited),
        Effect.provide(Alerts.layerDisabled)
      )
      for (const provider of ["openai", "anthropic"] as const) {
        const request = { projectId: "novel", userPrompt: "What happens next?", provider }
        yield* Effect.ignore(engine.generate(request, { useFallback: false }))
        yield* Effect.ignore(Stream.runDrain(engine.generateStream(request, { useFallback: false })))
      }
      expect(bodies.map((body) => [body.stream === true, body.tool_choice])).toEqual([
        [false, { type: "function", name: "plot_outline" }],
        [true, { type: "function", name: "plot_outline" }],
        [false, { type: "tool", name: "plot_outline" }],
        [true, { type: "tool", name: "plot_outline" }]
      ])
      expect(bodies.every((body) => body.tools?.[0]?.name === "plot_outline")).toBe(true)
    }))

  it.scoped("asks for the prompt cache: a stable prefix, OpenAI's key per project, Anthropic's breakpoint after the project", () =>
    Effect.gen(function*() {
      const bodies: Array<Record<string, any>> = []
      const engine = yield* PlotGeneration.make().pipe(
        Effect.provideService(Providers.Providers, yield* providers(bodies)),
        Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject, other: sampleProject })),
        Effect.provide(ProviderRateLimiter.layerUnlimited),
        Effect.provide(Alerts.layerDisabled)
      )
      for (const provider of ["openai", "anthropic"] as const) {
        for (
          const [projectId, kind, targetWordCount] of [
            ["novel", "outline", 600],
            ["novel", "scene_beats", 900],
            ["other", "outline", 600]
          ] as const
        ) {
          const request = { projectId, userPrompt: "What happens next?", provider, kind, targetWordCount }
          yield* Effect.ignore(Stream.runDrain(engine.generateStream(request, { useFallback: false })))
        }
      }
      const [openai, anthropic] = [bodies.slice(0, 3), bodies.slice(3)]
      // OpenAI: one key per project, the same for every request of it; project ids are not sent.
      const keys = openai.map((body) => body.prompt_cache_key)
      expect(keys[0]).toMatch(/^plot-engine-[A-Za-z0-9_-]{22}$/)
      expect([keys[1] === keys[0], keys[2] === keys[0]]).toEqual([true, false])
      expect(JSON.stringify(keys)).not.toContain("novel")
      // The same system prompt whatever the kind and length: the prefix stays stable across requests.
      const systemOf = (body: Record<string, any>) => JSON.stringify(body.input[0])
      expect(new Set(openai.map(systemOf)).size).toBe(1)
      expect(new Set(anthropic.map((body) => JSON.stringify(body.system))).size).toBe(1)
      // Anthropic: the project block, then a breakpoint, then the writer's request.
      const content = anthropic[0]!.messages[0].content
      expect(content).toHaveLength(2)
      expect(content[0].text).toContain("<project_data>")
      expect(content[0].cache_control).toEqual({ type: "ephemeral" })
      expect(content[1].text).toContain("What happens next?")
      expect(content[1].cache_control).toBeUndefined()
      expect(anthropic.every((body) => body.prompt_cache_key === undefined)).toBe(true)
    }))

  it.scoped("makes one language model per model and parameters", () =>
    Effect.gen(function*() {
      const service = yield* providers([])
      const a = yield* service.languageModel("openai", "gpt-4.1", { maxOutputTokens: 500, temperature: 0.8 })
      const b = yield* service.languageModel("openai", "gpt-4.1", { maxOutputTokens: 500, temperature: 0.8 })
      const c = yield* service.languageModel("openai", "gpt-4.1", { maxOutputTokens: 600, temperature: 0.8 })
      const d = yield* service.languageModel("openai", "gpt-4.1-mini", { maxOutputTokens: 500, temperature: 0.8 })
      expect(a).toBe(b)
      expect(c).not.toBe(a)
      expect(d).not.toBe(a)
    }))
})

describe("Providers.gatewayConfig", () => {
  const read = (entries: ReadonlyArray<readonly [string, string]>) =>
    Effect.withConfigProvider(Providers.gatewayConfig, ConfigProvider.fromMap(new Map(entries)))

  it.effect("refuses a base URL that is not an http(s) URL, naming its variable", () =>
    Effect.gen(function*() {
      for (
        const [name, value] of [
          ["OPENAI_BASE_URL", "notaurl"],
          ["OPENAI_BASE_URL", "ftp://gateway.example/v1"],
          ["ANTHROPIC_BASE_URL", "gateway.example"]
        ] as const
      ) {
        const key = name.replace("BASE_URL", "API_KEY")
        // Before, taken: every call failed as a network error, retried, and the writer got a template.
        const refused = yield* Effect.flip(read([[key, "sk-test-0123456789"], [name, value]]))
        expect([value, String(refused)]).toEqual([value, expect.stringContaining(name)])
      }
      const config = yield* read([["OPENAI_API_KEY", "sk-test-0123456789"], [
        "OPENAI_BASE_URL",
        " http://127.0.0.1:8787/v1 "
      ]])
      expect(config.openai?.baseUrl).toBe("http://127.0.0.1:8787/v1")
      // Set but empty, as .env files write an unset value: the default (found by review: it was refused).
      const empty = yield* read([["OPENAI_API_KEY", "sk-test-0123456789"], ["OPENAI_BASE_URL", ""]])
      expect(empty.openai?.baseUrl).toBeUndefined()
    }))

  it.effect("takes an empty key for no key: the provider is not configured", () =>
    Effect.gen(function*() {
      // Before, `OPENAI_API_KEY=` configured OpenAI: chosen first, it answered every call with a 401.
      const config = yield* read([["OPENAI_API_KEY", ""], ["ANTHROPIC_API_KEY", "sk-ant-test-0123456789"]])
      expect([config.openai, config.anthropic === undefined]).toEqual([undefined, false])
      expect((yield* read([["OPENAI_API_KEY", "   "]])).openai).toBeUndefined()
    }))
})
