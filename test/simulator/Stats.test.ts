/**
 * The simulator's counts, which the soak test compares with the engine's: every request that reached it counts,
 * one its client gave up on before the answer too. Over real HTTP on loopback; bounded: a second of wall time.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"

describe("GatewaySimulator stats", () => {
  it.scopedLive("counts a request its client gave up on while it waited for the answer", () =>
    Effect.gen(function*() {
      const simulator = yield* GatewaySimulator.GatewaySimulator
      const send = (signal: AbortSignal) =>
        fetch(`${simulator.openaiBaseUrl}/responses`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: "Bearer sk-test" },
          body: JSON.stringify({ model: "gpt-4.1", input: "Outline a story.", max_output_tokens: 100 }),
          signal
        }).then((response) => response.status, () => "aborted")
      // Each answered after 300 ms; three abandoned after 100.
      const outcomes = yield* Effect.forEach([0, 1, 2, 3], (i) =>
        Effect.promise(() => send(i === 0 ? new AbortController().signal : AbortSignal.timeout(100))), {
        concurrency: "unbounded"
      })
      expect(outcomes).toEqual([200, "aborted", "aborted", "aborted"])
      // Before, only the answered one counted: a request was counted when it was answered.
      expect((yield* simulator.stats).requests).toBe(4)
    }).pipe(Effect.provide(GatewaySimulator.layer({ faults: { latencyMs: 300 } }))))
})
