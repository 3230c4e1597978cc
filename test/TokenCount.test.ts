/**
 * Claude's calibration: the margin over the o200k count that each usage Anthropic reports corrects, and the
 * counters an engine keeps per model.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ModelCatalog from "../src/ModelCatalog.js"
import * as TokenCount from "../src/TokenCount.js"

const find = (provider: "openai" | "anthropic", id: string) =>
  ModelCatalog.find(ModelCatalog.defaultCatalog, provider, id).pipe((o) => (o._tag === "Some" ? o.value : undefined))!

describe("TokenCount.calibratedMargin", () => {
  it("moves 30 % of the way to the observed ratio (5 % to spare), in steps of 0.01, between 1 and 2", () => {
    expect(TokenCount.calibratedMargin(1.15, 1_000, 1_300)).toBe(1.28)
    expect(TokenCount.calibratedMargin(1.15, 1_000, 1_000)).toBe(1.17)
    expect(TokenCount.calibratedMargin(1.15, 1_000, 100)).toBe(1)
    expect(TokenCount.calibratedMargin(1.9, 1_000, 9_000)).toBe(2)
    // Nothing reported, or nothing estimated: the margin stays.
    expect(TokenCount.calibratedMargin(1.3, 0, 500)).toBe(1.3)
    expect(TokenCount.calibratedMargin(1.3, 500, 0)).toBe(1.3)
  })
})

describe("TokenCount.make", () => {
  it.effect("counts Claude with the margin, corrected by reported usage; OpenAI as it is", () =>
    Effect.gen(function*() {
      const tokens = yield* TokenCount.make({ count: () => (text) => text.length })
      const claude = find("anthropic", "claude-sonnet-4-5")
      const gpt = find("openai", "gpt-4.1")
      expect((yield* tokens.forModel(claude)).once("x".repeat(100))).toBe(115)
      expect((yield* tokens.forModel(gpt)).once("x".repeat(100))).toBe(100)
      yield* tokens.calibrate(claude, 1_000, 1_300)
      expect((yield* tokens.forModel(claude)).once("x".repeat(100))).toBe(128)
      // OpenAI's usage does not move Claude's margin.
      yield* tokens.calibrate(gpt, 1_000, 5_000)
      expect((yield* tokens.forModel(claude)).once("x".repeat(100))).toBe(128)
    }))
})
