/**
 * The failover scenarios of a public failover benchmark (failoverbench, methodology v0.1), adapted to the OpenAI
 * Responses API as primary and the Anthropic Messages API as fallback, each run through the real CLI (`generate`,
 * which streams) against a gateway simulator of its own whose primary key is scripted. Each passes when the writer
 * is rescued where an answer can be had, gets a clean bounded error where it cannot, never gets a truncated answer
 * as success, and the primary is not hammered: Retry-After honoured, a silent route not called again, the
 * fallback's model and usage reported. The flapping primary runs through the example server, in
 * `test/examples/http-server.test.ts`. Real processes on the wall clock, bounded: the engine's time limits are set
 * short, and every scenario stops by itself.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { ScriptStep } from "../../src/simulator/Faults.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { cli } from "../utils/cli.js"
import { sampleProjectFile } from "../utils/fixtures.js"

const primaryKey = "sk-proj-failover-primary-0123456789"
const fallbackKey = "sk-ant-failover-fallback-0123456789"

interface Outcome {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
  readonly elapsedMs: number
  /** The result, when the CLI printed one. */
  readonly result: any
  /** Requests each provider received. */
  readonly openai: number
  readonly anthropic: number
}

interface Scenario {
  readonly name: string
  /** The primary's answers, in order (then normal answers). */
  readonly primary: ReadonlyArray<ScriptStep>
  readonly prompt?: string
  readonly args?: ReadonlyArray<string>
  readonly check: (outcome: Outcome) => void
}

/** Runs the CLI against a simulator of its own, the primary's key scripted. */
const run = (scenario: Scenario) =>
  Effect.gen(function*() {
    const context = yield* Layer.build(GatewaySimulator.layer({ faults: { hangMs: 10_000 } }))
    const simulator = Context.get(context, GatewaySimulator.GatewaySimulator)
    yield* simulator.script(primaryKey, scenario.primary)
    const started = Date.now()
    const { code, stderr, stdout } = yield* cli(
      [
        "generate",
        "--project",
        sampleProjectFile,
        "--prompt",
        scenario.prompt ?? "What does Mara find under the floor?",
        "--provider",
        "openai",
        "--json",
        ...(scenario.args ?? [])
      ],
      {
        OPENAI_API_KEY: primaryKey,
        OPENAI_BASE_URL: simulator.openaiBaseUrl,
        ANTHROPIC_API_KEY: fallbackKey,
        ANTHROPIC_BASE_URL: simulator.anthropicBaseUrl,
        // Short limits, so that every scenario ends within seconds; not so short that a busy machine trips them.
        PLOT_ENGINE_ATTEMPT_TIMEOUT: "6 seconds",
        PLOT_ENGINE_FIRST_TOKEN_TIMEOUT: "3 seconds",
        PLOT_ENGINE_IDLE_TIMEOUT: "2 seconds",
        PLOT_ENGINE_DEADLINE: "45 seconds",
        // The table's delays (5 s after a 500) capped: a Retry-After above the cap moves on instead.
        PLOT_ENGINE_MAX_RETRY_DELAY: "2 seconds"
      }
    )
    const elapsedMs = Date.now() - started
    const stats = yield* simulator.stats
    let result: unknown = undefined
    try {
      result = JSON.parse(stdout)
    } catch {
      result = undefined
    }
    return {
      code,
      stdout,
      stderr,
      elapsedMs,
      result,
      openai: stats.byDialect.openai,
      anthropic: stats.byDialect.anthropic
    }
  }).pipe(Effect.scoped)

/** An answer the writer can use: complete, from a model, not a template. */
const rescued = (outcome: Outcome, provider: "openai" | "anthropic") => {
  expect(outcome.code, outcome.stderr).toBe(0)
  expect(outcome.result).toMatchObject({ provider, isTemplate: false })
  expect(outcome.result.content.length).toBeGreaterThan(200)
  // The fallback's model and usage are what the result reports, and its last billed attempt is that model's.
  const last = outcome.result.attempts.at(-1)
  expect([last.provider, last.model, last.outcome]).toEqual([provider, outcome.result.model, "success"])
  expect(last.usage.outputTokens).toBe(outcome.result.usage.outputTokens)
}

const scenarios: ReadonlyArray<Scenario> = [
  {
    name: "01 a 429 with Retry-After: waited for, then the primary answers",
    primary: [{ kind: "rate_limit", retryAfterMs: 1_500 }],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
      expect(o.result.retryCount).toBe(1)
      expect(o.elapsedMs).toBeGreaterThanOrEqual(1_500)
    }
  },
  {
    name: "02 a 429 without Retry-After: the wait in its message, then the primary answers",
    primary: [{ kind: "rate_limit" }],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
    }
  },
  {
    name: "03 a 500: retried once, the primary answers",
    primary: ["server_error"],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
    }
  },
  {
    name: "04 a 503: retried once, the primary answers",
    primary: ["unavailable"],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
    }
  },
  {
    name: "05 a connection reset: retried once, the primary answers",
    primary: ["reset"],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
    }
  },
  {
    name: "06 no response at all: one attempt timeout, then the fallback, the silent route not called again",
    primary: ["hang", "hang", "hang", "hang"],
    check: (o) => {
      rescued(o, "anthropic")
      expect(o.anthropic).toBe(1)
      // One call to each OpenAI model the chain had before the fallback's turn came (never one twice).
      expect(o.openai).toBe(o.result.warnings.filter((w: string) => w.startsWith("Fell back from openai")).length)
    }
  },
  {
    name: "07 a slow first token: the first-token limit, then the fallback",
    primary: ["slow_first_token", "slow_first_token", "slow_first_token", "slow_first_token"],
    check: (o) => {
      rescued(o, "anthropic")
      expect(o.anthropic).toBe(1)
      expect(o.stderr).toContain("falling back")
    }
  },
  {
    name: "08 a stream cut halfway: the part shown is void, the retry's complete answer is the result",
    primary: ["truncated_sse"],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
      expect(o.stderr).toContain("The answer was interrupted partway")
    }
  },
  {
    name: "09 a stream that stalls: the idle limit, then the fallback",
    primary: ["stall", "stall", "stall", "stall"],
    check: (o) => {
      rescued(o, "anthropic")
      expect(o.anthropic).toBe(1)
    }
  },
  {
    name: "10 a malformed event: retried, the primary answers",
    primary: ["malformed_json"],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
    }
  },
  {
    name: "11 a stream without its terminator: not an answer, though all of it came; retried",
    primary: ["missing_terminator"],
    check: (o) => {
      rescued(o, "openai")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
      expect(o.result.retryCount).toBe(1)
    }
  },
  {
    name: "12 a context too long: one smaller try, then a clean error (no template, no hammering)",
    primary: ["context_length", "context_length", "context_length", "context_length"],
    args: ["--model", "gpt-4.1"],
    check: (o) => {
      expect(o.code).not.toBe(0)
      expect(o.stdout).toBe("")
      expect(o.stderr).toContain("too large for the AI model")
      expect([o.openai, o.anthropic]).toEqual([2, 0])
    }
  },
  {
    name: "13 a content filter (400 content_policy_violation): the other provider's model of the same tier",
    primary: [],
    prompt: "What does Mara find under the floor? [simulate content-policy: openai]",
    check: (o) => {
      rescued(o, "anthropic")
      expect([o.openai, o.anthropic]).toEqual([1, 1])
      expect(o.result.warnings.join(" ")).toContain("after refusal")
    }
  },
  {
    name: "14 a fallback that rejects a prefill: it is asked afresh, never to continue the failed answer",
    // Every OpenAI attempt shows part of its outline, then stalls; the fallback refuses any assistant prefill.
    primary: ["stall", "stall", "stall", "stall"],
    check: (o) => {
      rescued(o, "anthropic")
      expect(o.stderr).toContain("The answer was interrupted partway")
    }
  },
  {
    name: "16 fail-over accounting: after the primary's retries, the fallback's model, usage and the attempts made",
    primary: Array(8).fill("server_error"),
    check: (o) => {
      rescued(o, "anthropic")
      expect(o.anthropic).toBe(1)
      // Every call counted: the primary's failures and the fallback's answer.
      expect(o.result.retryCount).toBe(o.openai + o.anthropic - 1)
      expect(o.result.warnings.join(" ")).toMatch(/Fell back from openai\/.* to anthropic\/.* after server_error/)
    }
  }
]

describe("failover scenarios through the CLI (OpenAI Responses primary, Anthropic fallback)", () => {
  it.live(
    "every scenario: rescued, or a clean bounded error; never a truncated answer as success",
    () =>
      Effect.gen(function*() {
        const outcomes = yield* Effect.forEach(
          scenarios,
          (scenario) => Effect.map(run(scenario), (o) => [scenario, o] as const),
          {
            concurrency: 3
          }
        )
        const failed: Array<string> = []
        for (const [scenario, outcome] of outcomes) {
          try {
            scenario.check(outcome)
          } catch (error) {
            failed.push(`${scenario.name}: ${String(error)}\n${outcome.stderr.slice(-2_000)}`)
          }
        }
        expect(failed).toEqual([])
      }),
    { timeout: 300_000 }
  )
})
