/**
 * What the real clients are sent for structured output, and that their models are made once.
 */
import type * as LanguageModel from "@effect/ai/LanguageModel"
import * as Tool from "@effect/ai/Tool"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import { PlotOutline } from "../src/Domain.js"
import * as Providers from "../src/Providers.js"
import * as ResponseParser from "../src/ResponseParser.js"

/** An HTTP client that keeps every JSON body it is sent and answers 400 (only the requests matter here). */
const capturing = (bodies: Array<Record<string, any>>) =>
  HttpClient.make((request) => {
    if (request.body._tag === "Uint8Array") bodies.push(JSON.parse(new TextDecoder().decode(request.body.body)))
    return Effect.succeed(HttpClientResponse.fromWeb(
      request,
      new Response(JSON.stringify({ error: { message: "captured", type: "invalid_request_error" } }), { status: 400 })
    ))
  })

const providers = (bodies: Array<Record<string, any>>) =>
  Providers.make({
    openai: { apiKey: Redacted.make("sk-test-0123456789") },
    anthropic: { apiKey: Redacted.make("sk-ant-test-0123456789") }
  }).pipe(Effect.provideService(HttpClient.HttpClient, capturing(bodies)))

const structuredCall = (model: LanguageModel.Service) =>
  Effect.ignore(
    model.generateObject({
      prompt: "Outline it.",
      schema: ResponseParser.structuredOutline,
      objectName: "plot_outline"
    })
  )

describe("Providers", () => {
  it.scoped("sends PlotOutline's JSON Schema and description as structured output to both providers", () =>
    Effect.gen(function*() {
      const bodies: Array<Record<string, any>> = []
      const service = yield* providers(bodies)
      yield* structuredCall(yield* service.languageModel("openai", "gpt-4.1", { maxOutputTokens: 500 }))
      yield* structuredCall(yield* service.languageModel("anthropic", "claude-sonnet-4-5", { maxOutputTokens: 500 }))
      const schema = Tool.getJsonSchemaFromSchemaAst(PlotOutline.ast)
      const description = Tool.getDescriptionFromSchemaAst(PlotOutline.ast)
      expect(bodies[0]!.text.format).toEqual({
        type: "json_schema",
        name: "plot_outline",
        description,
        schema,
        strict: true
      })
      expect(bodies[0]!.max_output_tokens).toBe(500)
      expect(bodies[1]!.tools).toEqual([{ name: "plot_outline", description, input_schema: schema }])
      expect(bodies[1]!.tool_choice).toMatchObject({ type: "tool", name: "plot_outline" })
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
