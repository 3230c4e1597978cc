/**
 * Which failures let a model of the fallback chain run, as a plain decision.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Errors from "../../src/Errors.js"
import * as Chain from "../../src/generation/Chain.js"
import * as ModelCatalog from "../../src/ModelCatalog.js"

const catalog = ModelCatalog.defaultCatalog
const model = (provider: "openai" | "anthropic", id: string) =>
  ModelCatalog.find(catalog, provider, id).pipe((o) => (o._tag === "Some" ? o.value : undefined))!
const gpt41 = model("openai", "gpt-4.1")
const mini = model("openai", "gpt-4.1-mini")
const sonnet = model("anthropic", "claude-sonnet-4-5")
const on = { provider: "openai" as const, model: "gpt-4.1", detail: "x" }

describe("Chain.mayRunAfter", () => {
  it("fails fast on auth and invalid requests", () => {
    for (const next of [gpt41, mini, sonnet]) {
      expect(Chain.mayRunAfter(catalog, next, new Errors.AuthError(on))).toBe(false)
      expect(Chain.mayRunAfter(catalog, next, new Errors.InvalidRequestError(on))).toBe(false)
    }
  })

  it("moves an exhausted quota to the other provider only", () => {
    const quota = new Errors.QuotaExhaustedError({ ...on, reason: "insufficient_quota" })
    expect([gpt41, mini, sonnet].map((next) => Chain.mayRunAfter(catalog, next, quota))).toEqual([false, false, true])
  })

  it("after a context-length rejection, runs the model itself again or one with a bigger window", () => {
    const tooLong = new Errors.ContextTooLongError({ ...on, model: "claude-sonnet-4-5", provider: "anthropic" })
    // Sonnet's window is 200K: gpt-4.1 and its mini (about 1M) may take the prompt, Sonnet only for its smaller retry.
    expect([sonnet, gpt41, mini].map((next) => Chain.mayRunAfter(catalog, next, tooLong))).toEqual([true, true, true])
    const fromGpt = new Errors.ContextTooLongError(on)
    expect([mini, sonnet].map((next) => Chain.mayRunAfter(catalog, next, fromGpt))).toEqual([false, false])
  })

  it("never tries a model the provider does not serve again; any other model may run", () => {
    const notFound = new Errors.ModelNotFoundError(on)
    expect([gpt41, mini, sonnet].map((next) => Chain.mayRunAfter(catalog, next, notFound))).toEqual([false, true, true])
  })

  it("lets transient failures and unreadable replies run anywhere", () => {
    for (const error of [new Errors.RateLimitError(on), new Errors.ServerError(on), new Errors.NetworkError(on)]) {
      expect([gpt41, mini, sonnet].every((next) => Chain.mayRunAfter(catalog, next, error))).toBe(true)
    }
    const parse = new Errors.ResponseParseError({ reason: "no JSON", excerpt: "" })
    expect(Chain.mayRunAfter(catalog, sonnet, parse)).toBe(true)
  })
})
