import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as FileSystem from "@effect/platform/FileSystem"
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Deployments from "../src/Deployments.js"
import * as Providers from "../src/Providers.js"

const file = (deployments: ReadonlyArray<unknown>) => JSON.stringify({ deployments })

const twoOrganizations = file([
  { id: "openai-main", dialect: "openai-responses", apiKeyEnv: "OPENAI_API_KEY" },
  {
    id: "openai-second-org",
    dialect: "openai-responses",
    baseUrl: "https://eu.gateway.example/v1",
    apiKeyEnv: "OPENAI_SECOND_ORG_KEY",
    headers: { "OpenAI-Organization": "org-second" },
    models: [{ model: "gpt-4.1", quota: { requestsPerMinute: 500, tokensPerMinute: 200_000 } }, {
      model: "gpt-4.1-mini",
      name: "mini-eu"
    }],
    weight: 2
  },
  { id: "claude", dialect: "anthropic-messages", apiKey: "sk-ant-inline-0123" }
])

const env = ConfigProvider.fromMap(
  new Map([["OPENAI_API_KEY", "sk-main-0123"], ["OPENAI_SECOND_ORG_KEY", "sk-second-4567"]])
)

/** The error of decoding `text`, as `field: reason`. */
const rejected = (text: string) =>
  Deployments.decode(text).pipe(
    Effect.flip,
    Effect.map((error) => `${"field" in error ? error.field : "config"}: ${"reason" in error ? error.reason : ""}`),
    Effect.withConfigProvider(env)
  )

describe("Deployments", () => {
  it.effect("decodes a file: keys from the environment or inline, redacted; defaults for what is left out", () =>
    Effect.gen(function*() {
      const [main, second, claude] = yield* Deployments.decode(twoOrganizations).pipe(Effect.withConfigProvider(env))
      expect(Redacted.value(main!.apiKey)).toBe("sk-main-0123")
      expect(String(main!.apiKey)).not.toContain("sk-main")
      expect([main!.baseUrl, main!.headers, main!.models, main!.weight]).toEqual([undefined, {}, undefined, 1])
      expect(Redacted.value(second!.apiKey)).toBe("sk-second-4567")
      expect([second!.weight, second!.headers]).toEqual([2, { "OpenAI-Organization": "org-second" }])
      expect(Redacted.value(claude!.apiKey)).toBe("sk-ant-inline-0123")
    }))

  it.effect("names the field that is wrong", () =>
    Effect.gen(function*() {
      const entry = { id: "a", dialect: "openai-responses", apiKey: "k" }
      expect(yield* rejected("{")).toMatch(/^deployments file: /)
      expect(yield* rejected(file([]))).toMatch(/^deployments\[0\]: is missing/)
      expect(yield* rejected(file([{ ...entry, dialect: "gemini" }]))).toBe(
        `deployments[0].dialect: must be "openai-responses" or "anthropic-messages"`
      )
      expect(yield* rejected(file([{ ...entry, id: "has space" }]))).toBe(
        "deployments[0].id: must be 1 to 64 letters, digits, '.', '_' or '-'"
      )
      expect(yield* rejected(file([{ ...entry, baseUrl: "ftp://x" }]))).toBe(
        "deployments[0].baseUrl: must be an http(s) URL"
      )
      expect(yield* rejected(file([{ ...entry, weight: -1 }]))).toMatch(/^deployments\[0\]\.weight: /)
      expect(yield* rejected(file([{ ...entry, extra: 1 }]))).toMatch(/^deployments\[0\]\.extra: /)
      expect(yield* rejected(file([entry, entry]))).toBe("deployments[1].id: repeats \"a\"")
      expect(yield* rejected(file([{ id: "a", dialect: "openai-responses" }]))).toBe(
        "deployments[0].apiKey: give one of apiKey or apiKeyEnv"
      )
      expect(yield* rejected(file([{ id: "a", dialect: "openai-responses", apiKeyEnv: "NOT_SET" }]))).toBe(
        "deployments[0].apiKeyEnv: names NOT_SET, which is not set"
      )
    }))

  it.effect("refuses a file that names a model its dialect's provider does not have in the catalog, by its place", () =>
    Effect.gen(function*() {
      const entry = (model: string) => ({
        id: "a",
        dialect: "openai-responses",
        apiKey: "k",
        models: [{ model: "gpt-4.1" }, { model }]
      })
      const fromFile = (text: string) =>
        Effect.flip(Deployments.fromConfig).pipe(
          Effect.withConfigProvider(
            ConfigProvider.fromMap(new Map([["PLOT_ENGINE_DEPLOYMENTS_FILE", "deployments.json"]]))
          ),
          Effect.provide(FileSystem.layerNoop({ readFileString: () => Effect.succeed(text) }))
        )
      // Before, taken: the engine then said the OpenAI provider was not configured ("set OPENAI_API_KEY").
      for (const model of ["gpt-99", "claude-opus-4-1"]) {
        const refused = yield* fromFile(file([entry(model)]))
        expect(refused).toMatchObject({ _tag: "RequestValidationError", field: "deployments[0].models[1].model" })
        expect(refused.message).toContain(`"${model}" is not in the catalog for openai`)
      }
      expect(Deployments.unknownModel([], [])).toBeUndefined()
    }))

  it("says which deployments serve a model, under which name, and the limiter's quotas by key", () => {
    const deployments = Effect.runSync(
      Deployments.decode(twoOrganizations).pipe(Effect.withConfigProvider(env))
    )
    const [main, second, claude] = deployments
    const gpt41 = { provider: "openai" as const, id: "gpt-4.1" }
    const mini = { provider: "openai" as const, id: "gpt-4.1-mini" }
    expect([main, second, claude].map((d) => Deployments.servedName(d!, gpt41))).toEqual([
      "gpt-4.1",
      "gpt-4.1",
      undefined
    ])
    expect(Deployments.servedName(second!, mini)).toBe("mini-eu")
    expect(Deployments.servedName(second!, { provider: "openai", id: "gpt-5" })).toBeUndefined()
    expect(Deployments.keyQuotas(deployments)).toEqual({
      "openai-second-org/gpt-4.1": { requestsPerMinute: 500, tokensPerMinute: 200_000, maxConcurrent: 5 }
    })
  })

  it("the environment's shorthand is one deployment per provider given a key, named after it", () => {
    const shorthand = Deployments.shorthand({
      openai: { apiKey: Redacted.make("sk-1"), baseUrl: "http://localhost:1/v1" }
    })
    expect(shorthand.map((d) => [d.id, d.dialect, d.baseUrl, d.models, d.weight])).toEqual([
      ["openai", "openai-responses", "http://localhost:1/v1", undefined, 1]
    ])
  })

  it.effect("Providers over a file: the routes of each model, in the order configured", () =>
    Effect.gen(function*() {
      const deployments = yield* Deployments.decode(twoOrganizations).pipe(Effect.withConfigProvider(env))
      const providers = yield* Providers.make({ deployments })
      expect(providers.configured).toEqual(["openai", "anthropic"])
      expect(providers.routes({ provider: "openai", id: "gpt-4.1" }).map((r) => [r.deployment, r.weight])).toEqual([
        ["openai-main", 1],
        ["openai-second-org", 2]
      ])
      expect(providers.routes({ provider: "openai", id: "gpt-5" }).map((r) => r.deployment)).toEqual(["openai-main"])
      expect(providers.routes({ provider: "anthropic", id: "claude-sonnet-4-5" }).map((r) => r.deployment)).toEqual([
        "claude"
      ])
    }).pipe(Effect.scoped, Effect.provide(FetchHttpClient.layer)))
})
