/**
 * The real provider clients over real HTTP against the gateway simulator on loopback: `@effect/ai-openai`,
 * `@effect/ai-anthropic`, and the official `openai` and `@anthropic-ai/sdk` SDKs, unchanged.
 */
import Anthropic from "@anthropic-ai/sdk"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, layer } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import OpenAI from "openai"
import * as Alerts from "../../src/Alerts.js"
import { PlotOutline, type ProviderName } from "../../src/Domain.js"
import * as Classify from "../../src/internal/classify.js"
import * as PlotGeneration from "../../src/PlotGeneration.js"
import * as ProjectContextStore from "../../src/ProjectContextStore.js"
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"
import * as Providers from "../../src/Providers.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { sampleProject } from "../utils/fixtures.js"

const keys = { openai: "sk-test-openai-0123456789", anthropic: "sk-ant-test-0123456789" }
const models: Record<ProviderName, string> = { openai: "gpt-4.1", anthropic: "claude-sonnet-4-5" }

const providersOf = (simulator: GatewaySimulator.Service, apiKeys = keys) =>
  Providers.make({
    openai: { apiKey: Redacted.make(apiKeys.openai), baseUrl: simulator.openaiBaseUrl },
    anthropic: { apiKey: Redacted.make(apiKeys.anthropic), baseUrl: simulator.anthropicBaseUrl }
  })

const prompt = "Write a plot about Mara Quinn and Elias Thorne at Saltmarsh Light."

layer(Layer.merge(GatewaySimulator.layer({ apiKeys: keys }), NodeHttpClient.layerUndici))(
  "the @effect/ai clients",
  (it) => {
    for (const provider of ["openai", "anthropic"] as const) {
      describe(provider, () => {
        it.scoped("generate text with usage", () =>
          Effect.gen(function*() {
            const providers = yield* providersOf(yield* GatewaySimulator.GatewaySimulator)
            const model = yield* providers.languageModel(provider, models[provider], {
              maxOutputTokens: 400,
              temperature: 0.5
            })
            const response = yield* model.generateText({ prompt })
            expect(response.text).toContain("Mara")
            expect(response.usage.inputTokens).toBeGreaterThan(0)
            expect(response.usage.outputTokens).toBeGreaterThan(0)
            expect(response.usage.outputTokens).toBeLessThanOrEqual(400)
          }))

        it.scoped("generate an object that matches the PlotOutline schema", () =>
          Effect.gen(function*() {
            const providers = yield* providersOf(yield* GatewaySimulator.GatewaySimulator)
            const model = yield* providers.languageModel(provider, models[provider], { maxOutputTokens: 2_000 })
            const response = yield* model.generateObject({ prompt, schema: PlotOutline, objectName: "plot_outline" })
            expect(response.value).toBeInstanceOf(PlotOutline)
            expect(response.value.acts.length).toBeGreaterThan(0)
          }))

        it.scoped("stream text deltas and a finish with usage", () =>
          Effect.gen(function*() {
            const providers = yield* providersOf(yield* GatewaySimulator.GatewaySimulator)
            const model = yield* providers.languageModel(provider, models[provider], { maxOutputTokens: 300 })
            const parts = Chunk.toArray(yield* Stream.runCollect(model.streamText({ prompt })))
            const text = parts.flatMap((p) => (p.type === "text-delta" ? [p.delta] : [])).join("")
            const finish = parts.find((p) => p.type === "finish")
            expect(text).toContain("Mara")
            expect(finish?.type === "finish" && finish.usage.outputTokens).toBeGreaterThan(0)
          }))

        it.scoped("classify a wrong key as an auth error", () =>
          Effect.gen(function*() {
            const providers = yield* providersOf(yield* GatewaySimulator.GatewaySimulator, {
              openai: "sk-wrong-key-000000",
              anthropic: "sk-ant-wrong-000000"
            })
            const model = yield* providers.languageModel(provider, models[provider], { maxOutputTokens: 300 })
            const error = yield* Effect.flip(model.generateText({ prompt }))
            const classified = Classify.classify(error, { provider, model: models[provider] })
            expect(classified._tag).toBe("AuthError")
            expect(classified._tag === "AuthError" && classified.status).toBe(401)
          }))

        it.scoped("generate a plot end to end, plain and streamed", () =>
          Effect.gen(function*() {
            const providers = yield* providersOf(yield* GatewaySimulator.GatewaySimulator)
            const engine = yield* PlotGeneration.make().pipe(
              Effect.provideService(Providers.Providers, providers),
              Effect.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
              Effect.provide(ProviderRateLimiter.layerUnlimited),
              Effect.provide(Alerts.layerDisabled)
            )
            const request = {
              projectId: "novel",
              userPrompt: "What happens at the Drowned Bell?",
              provider,
              targetWordCount: 600,
              // Within OpenAI's range; sent to Anthropic as its highest, 1 (1.5 it answers with a 400).
              temperature: 1.5
            }
            const plain = yield* engine.generate(request, { useFallback: false })
            expect(plain.isTemplate).toBe(false)
            expect(plain.provider).toBe(provider)
            expect(plain.content).toMatch(/Mara Quinn|Elias Thorne|Isolde Varga/)
            expect(plain.usage.inputTokens).toBeGreaterThan(1_000)
            const events = Chunk.toArray(
              yield* Stream.runCollect(engine.generateStream(request, { useFallback: false }))
            )
            const last = events.at(-1)
            expect(events.filter((e) => e._tag === "TextDelta").length).toBeGreaterThan(1)
            expect(last?._tag === "Completed" && last.result.isTemplate).toBe(false)
            // The provider streamed the outline tool's call; the writer saw its parts and their Markdown, no JSON.
            const result = last?._tag === "Completed" ? last.result : undefined
            const beats = events.filter((e) => e._tag === "BeatWritten")
            expect(beats.length).toBe(result?.outline.acts.reduce((n, act) => n + act.beats.length, 0))
            const prose = events.flatMap((e) => (e._tag === "TextDelta" ? [e.delta] : [])).join("")
            expect(prose).toBe(result?.content)
            expect(prose).not.toMatch(/[{}]/)
          }))
      })
    }

    it.effect("count what they served", () =>
      Effect.gen(function*() {
        const stats = yield* (yield* GatewaySimulator.GatewaySimulator).stats
        expect(stats.requests).toBeGreaterThanOrEqual(10)
        expect(stats.byStatus["401"]).toBe(2)
      }))
  }
)

layer(GatewaySimulator.layer({ apiKeys: keys }))("the official SDKs, unchanged", (it) => {
  const objectSchema = {
    type: "object",
    properties: { title: { type: "string" }, characters: { type: "array", items: { type: "string" } } },
    required: ["title", "characters"],
    additionalProperties: false
  }

  it.effect("openai responses.create", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const client = new OpenAI({ apiKey: keys.openai, baseURL: simulator.openaiBaseUrl, maxRetries: 0 })
      const response = yield* Effect.promise(() =>
        client.responses.create({ model: "gpt-4.1", input: prompt, max_output_tokens: 300 })
      )
      expect(response.output_text).toContain("Mara")
      expect(response.usage?.output_tokens).toBeGreaterThan(0)
      const structured = yield* Effect.promise(() =>
        client.responses.create({
          model: "gpt-4.1",
          input: prompt,
          text: { format: { type: "json_schema", name: "plot", schema: objectSchema, strict: true } }
        })
      )
      const value = JSON.parse(structured.output_text)
      expect(typeof value.title).toBe("string")
      expect(Array.isArray(value.characters)).toBe(true)
    }))

  it.effect("openai responses.create with stream", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const client = new OpenAI({ apiKey: keys.openai, baseURL: simulator.openaiBaseUrl, maxRetries: 0 })
      const collected = yield* Effect.promise(async () => {
        const stream = await client.responses.create({
          model: "gpt-4.1",
          input: prompt,
          max_output_tokens: 300,
          stream: true
        })
        const types: Array<string> = []
        let text = ""
        for await (const event of stream) {
          types.push(event.type)
          if (event.type === "response.output_text.delta") text += event.delta
        }
        return { types, text }
      })
      expect(collected.types[0]).toBe("response.created")
      expect(collected.types.at(-1)).toBe("response.completed")
      expect(collected.text).toContain("Mara")
    }))

  it.effect("anthropic messages.create, plain and with a forced tool", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const client = new Anthropic({ apiKey: keys.anthropic, baseURL: simulator.anthropicBaseUrl, maxRetries: 0 })
      const message = yield* Effect.promise(() =>
        client.messages.create({
          model: "claude-sonnet-4-5",
          max_tokens: 300,
          messages: [{ role: "user", content: prompt }]
        })
      )
      expect(message.content[0]?.type === "text" && message.content[0].text).toContain("Mara")
      expect(message.stop_reason).toBe("end_turn")
      const tool = yield* Effect.promise(() =>
        client.messages.create({
          model: "claude-sonnet-4-5",
          max_tokens: 1_000,
          messages: [{ role: "user", content: prompt }],
          tools: [{ name: "plot", input_schema: objectSchema as Anthropic.Tool.InputSchema }],
          tool_choice: { type: "tool", name: "plot" }
        })
      )
      const block = tool.content[0]
      expect(block?.type).toBe("tool_use")
      expect(
        block?.type === "tool_use" &&
          Schema.is(Schema.Struct({ title: Schema.String, characters: Schema.Array(Schema.String) }))(block.input)
      ).toBe(true)
    }))

  it.effect("anthropic messages.create with stream", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const client = new Anthropic({ apiKey: keys.anthropic, baseURL: simulator.anthropicBaseUrl, maxRetries: 0 })
      const collected = yield* Effect.promise(async () => {
        const stream = await client.messages.create({
          model: "claude-sonnet-4-5",
          max_tokens: 300,
          messages: [{ role: "user", content: prompt }],
          stream: true
        })
        const types: Array<string> = []
        let text = ""
        for await (const event of stream) {
          types.push(event.type)
          if (event.type === "content_block_delta" && event.delta.type === "text_delta") text += event.delta.text
        }
        return { types, text }
      })
      expect(collected.types[0]).toBe("message_start")
      expect(collected.types.at(-1)).toBe("message_stop")
      expect(collected.text).toContain("Mara")
    }))

  it.effect("the official SDKs see a wrong key as their authentication error", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const openai = new OpenAI({ apiKey: "sk-wrong-0000000000", baseURL: simulator.openaiBaseUrl, maxRetries: 0 })
      const anthropic = new Anthropic({
        apiKey: "sk-ant-wrong-00000",
        baseURL: simulator.anthropicBaseUrl,
        maxRetries: 0
      })
      const openaiError = yield* Effect.flip(
        Effect.tryPromise(() => openai.responses.create({ model: "gpt-4.1", input: "hi" }))
      )
      const anthropicError = yield* Effect.flip(Effect.tryPromise(() =>
        anthropic.messages.create({
          model: "claude-sonnet-4-5",
          max_tokens: 10,
          messages: [{ role: "user", content: "hi" }]
        })
      ))
      expect(openaiError.error).toBeInstanceOf(OpenAI.AuthenticationError)
      expect(anthropicError.error).toBeInstanceOf(Anthropic.AuthenticationError)
    }))
})
