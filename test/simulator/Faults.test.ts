import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Faults from "../../src/simulator/Faults.js"

describe("Faults.makePlan", () => {
  it("plays a key's script in order, then answers normally", () => {
    const plan = Faults.makePlan(1)
    plan.script("k", ["rate_limit", { kind: "server_error", retryAfterMs: 10 }, "ok"])
    expect([plan.next("k"), plan.next("k"), plan.next("k"), plan.next("k")]).toEqual([
      { kind: "rate_limit" },
      { kind: "server_error", retryAfterMs: 10 },
      undefined,
      undefined
    ])
    expect(plan.next("other")).toBeUndefined()
  })

  it("draws random faults at their rates, reproducibly for a seed", () => {
    const draw = (seed: number) => {
      const plan = Faults.makePlan(seed, {
        rates: { rate_limit: 0.1, server_error: 0.05, reset: 0.02 },
        rateLimitRetryAfterMs: 250
      })
      return Array.from({ length: 20_000 }, () => plan.next("k"))
    }
    const faults = draw(7)
    expect(draw(7)).toEqual(faults)
    const share = (kind: Faults.FaultKind) => faults.filter((f) => f?.kind === kind).length / faults.length
    expect(share("rate_limit")).toBeCloseTo(0.1, 2)
    expect(share("server_error")).toBeCloseTo(0.05, 2)
    expect(share("reset")).toBeCloseTo(0.02, 2)
    expect(faults.find((f) => f?.kind === "rate_limit")).toEqual({ kind: "rate_limit", retryAfterMs: 250 })
  })
})

describe("parseFaultRates (the simulate command's --faults)", () => {
  it("reads rates and rejects what is not one", async () => {
    const { parseFaultRates } = await import("../../src/cli/Cli.js")
    expect(parseFaultRates("rate_limit=0.1, server_error=0.05")).toEqual(
      Either.right({ rate_limit: 0.1, server_error: 0.05 })
    )
    expect(parseFaultRates("")).toEqual(Either.right({}))
    expect(Either.isLeft(parseFaultRates("bogus=0.1"))).toBe(true)
    expect(Either.isLeft(parseFaultRates("reset=2"))).toBe(true)
    expect(Either.isLeft(parseFaultRates("reset=0.6,hang=0.6"))).toBe(true)
  })
})
