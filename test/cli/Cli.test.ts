/**
 * The CLI as a person runs it: a real process, offline on the embedded simulator or against a gateway given
 * by the environment.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Cli from "../../src/cli/Cli.js"
import { PlotResult } from "../../src/Domain.js"
import * as Faults from "../../src/simulator/Faults.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { sampleProjectFile } from "../utils/fixtures.js"

const root = fileURLToPath(new URL("../..", import.meta.url))

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the CLI from source with only the given provider variables set. */
const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.async<Run>((resume) => {
    const { OPENAI_API_KEY: _a, ANTHROPIC_API_KEY: _b, OPENAI_BASE_URL: _c, ANTHROPIC_BASE_URL: _d, ...base } =
      process.env
    execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", ...args],
      { cwd: root, env: { ...base, ...env }, timeout: 60_000 },
      (error, stdout, stderr) =>
        resume(
          Effect.succeed({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
        )
    )
  })

const generate = ["generate", "--project", sampleProjectFile, "--prompt", "What does Mara find under the floor?"]

describe("plot-engine generate, offline", () => {
  it.effect(
    "prints only the PlotResult on stdout with --json, and says it is offline on stderr",
    () =>
      Effect.gen(function*() {
        const run = yield* cli([...generate, "--words", "400", "--json"])
        expect(run.code).toBe(0)
        const result = Schema.decodeUnknownSync(PlotResult)(JSON.parse(run.stdout))
        expect(result.isTemplate).toBe(false)
        expect(result.provider).toBe("openai")
        expect(run.stderr).toContain("embedded gateway simulator")
        expect(run.stderr).toContain("AI is generating your plot content")
      }),
    60_000
  )

  it.effect("prints the stages, the plot and a summary", () =>
    Effect.gen(function*() {
      const run = yield* cli([...generate, "--provider", "anthropic"])
      expect(run.code).toBe(0)
      expect(run.stdout).toContain("[ 10%] Gathering relevant project context...")
      expect(run.stdout).toMatch(/\n# .+\n/)
      expect(run.stdout).toMatch(/Model: {5}claude-haiku-4-5 \(User preference\)/)
      expect(run.stdout).toMatch(/Cost: {6}\$0\.\d+/)
    }), 60_000)

  it.effect("exits non-zero with the field named on bad input", () =>
    Effect.gen(function*() {
      const run = yield* cli([...generate, "--words", "5"])
      expect(run.code).not.toBe(0)
      expect(run.stderr).toContain("targetWordCount")
    }), 60_000)
})

/** A copy of the sample project with hundreds of thousands of tokens of previous chapters. */
const hugeProjectFile = () => {
  const project = JSON.parse(readFileSync(sampleProjectFile, "utf8"))
  project.previousContent = Array.from({ length: 60 }, (_, i) => ({
    title: `Chapter ${i + 1}`,
    text: `Chapter ${i + 1}. ${
      "The fog came in over Greyhaven and Mara kept the light burning through the night. ".repeat(400)
    }`
  }))
  const file = path.join(mkdtempSync(path.join(tmpdir(), "plot-engine-cli-")), "huge-novel.json")
  writeFileSync(file, JSON.stringify(project))
  return file
}

layer(GatewaySimulator.layer({ apiKeys: { openai: "sk-right-key-123456" } }))(
  "plot-engine generate, against a gateway",
  (it) => {
    it.effect(
      "fails after exactly one request with the authentication message on a wrong key",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const run = yield* cli(generate, {
            OPENAI_API_KEY: "sk-wrong-key-654321",
            OPENAI_BASE_URL: simulator.openaiBaseUrl
          })
          expect(run.code).not.toBe(0)
          expect(run.stderr).toContain("There's an issue with API authentication. Please check your settings.")
          expect(run.stderr + run.stdout).not.toContain("sk-wrong-key-654321")
          expect((yield* simulator.stats).requests).toBe(1)
        }),
      60_000
    )

    it.effect("generates through the configured gateway", () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const run = yield* cli([...generate, "--json"], {
          OPENAI_API_KEY: "sk-right-key-123456",
          OPENAI_BASE_URL: simulator.openaiBaseUrl
        })
        expect(run.code).toBe(0)
        expect(run.stderr).not.toContain("embedded gateway simulator")
        expect(JSON.parse(run.stdout).provider).toBe("openai")
      }), 60_000)

    it.effect(
      "sends a project far larger than any budget within the budget, and warns that context was cut",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const before = yield* simulator.stats
          const run = yield* cli(
            ["generate", "--project", hugeProjectFile(), "--prompt", "What happens after the storm?", "--json"],
            { OPENAI_API_KEY: "sk-right-key-123456", OPENAI_BASE_URL: simulator.openaiBaseUrl }
          )
          expect(run.code).toBe(0)
          const result = JSON.parse(run.stdout)
          expect(result.isTemplate).toBe(false)
          expect(result.warnings[0]).toMatch(
            /^The project context was cut to fit \d+ tokens: dropped \d+ of 60 previous chapters/
          )
          const after = yield* simulator.stats
          // About 1.2 million characters of project went in; what was sent fits the 32,000-token budget plus the frame.
          expect(after.inputTokens - before.inputTokens).toBeLessThanOrEqual(32_000 + 2_500)
          expect(after.inputTokens - before.inputTokens).toBeGreaterThan(0.9 * 32_000)
        }),
      60_000
    )

    it.effect(
      "never prints the key: not on stdout, stderr, the output file or the report, whatever failed",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const key = "sk-right-key-123456"
          yield* simulator.script(key, [
            "auth",
            "insufficient_quota",
            { kind: "rate_limit", retryAfterMs: 20 },
            "ok",
            "invalid_request",
            "context_length",
            "ok",
            "malformed_json",
            "ok"
          ])
          const dir = mkdtempSync(path.join(tmpdir(), "plot-engine-batch-"))
          const requests = path.join(dir, "requests.jsonl")
          const lines = readFileSync(fileURLToPath(new URL("../../examples/batch.jsonl", import.meta.url)), "utf8")
            .trim()
            .split("\n").slice(0, 6)
          writeFileSync(
            requests,
            lines.map((line) => JSON.stringify({ ...JSON.parse(line), provider: "openai" })).join("\n") + "\n"
          )
          const out = path.join(dir, "results.jsonl")
          const report = path.join(dir, "report")
          const env = {
            OPENAI_API_KEY: key,
            OPENAI_BASE_URL: simulator.openaiBaseUrl,
            PLOT_ENGINE_MAX_RETRY_DELAY: "50 millis"
          }
          const batch = yield* cli(
            [
              "batch",
              "--requests",
              requests,
              "--projects",
              path.dirname(sampleProjectFile),
              "--out",
              out,
              "--report",
              report,
              "--concurrency",
              "1"
            ],
            env
          )
          yield* simulator.script(key, ["auth"])
          const single = yield* cli(generate, env)
          expect(single.code).not.toBe(0)
          const printed = [
            batch.stdout,
            batch.stderr,
            single.stdout,
            single.stderr,
            readFileSync(out, "utf8"),
            readFileSync(path.join(report, "index.html"), "utf8")
          ].join("\n")
          // Failures were printed, and the key with none of them.
          expect(printed).toContain("AuthError")
          for (const fragment of [key, "right-key-123456", "sk-right-key"]) {
            expect(printed).not.toContain(fragment)
          }
        }),
      60_000
    )

    it.effect("retries a 429 after the retry-after-ms it asked for", () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const key = "sk-right-key-123456"
        yield* simulator.script(key, [{ kind: "rate_limit", retryAfterMs: 2_500 }, "ok"])
        const before = (yield* simulator.stats).requests
        const started = Date.now()
        const run = yield* cli(generate, { OPENAI_API_KEY: key, OPENAI_BASE_URL: simulator.openaiBaseUrl })
        expect(run.code).toBe(0)
        expect(run.stdout).toContain(
          "We're experiencing high demand. Your request will retry automatically in a moment... (rate_limit from openai/gpt-4.1-mini; attempt 2 in 2.5 s)"
        )
        expect(run.stdout).toContain("Retries:   1")
        expect((yield* simulator.stats).requests - before).toBe(2)
        expect(Date.now() - started).toBeGreaterThanOrEqual(2_500)
      }), 60_000)

    it.effect("does not retry insufficient_quota", () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const key = "sk-right-key-123456"
        yield* simulator.script(key, ["insufficient_quota"])
        const before = (yield* simulator.stats).requests
        const run = yield* cli(generate, { OPENAI_API_KEY: key, OPENAI_BASE_URL: simulator.openaiBaseUrl })
        expect(run.code).not.toBe(0)
        expect(run.stderr).toContain("The AI service's usage limit has been reached.")
        expect((yield* simulator.stats).requests - before).toBe(1)
      }), 60_000)

    it.effect("retries a connection reset", () =>
      Effect.gen(function*() {
        const simulator = yield* GatewaySimulator.GatewaySimulator
        const key = "sk-right-key-123456"
        yield* simulator.script(key, ["reset", "ok"])
        const before = (yield* simulator.stats).requests
        const run = yield* cli([...generate, "--json"], {
          OPENAI_API_KEY: key,
          OPENAI_BASE_URL: simulator.openaiBaseUrl
        })
        expect(run.code).toBe(0)
        expect(JSON.parse(run.stdout).retryCount).toBe(1)
        expect(run.stderr).toContain("network_error")
        expect((yield* simulator.stats).requests - before).toBe(2)
      }), 60_000)
  }
)

describe("plot-engine batch, offline", () => {
  it.effect(
    "writes one line per request (results and typed errors) and an HTML report with its charts",
    () =>
      Effect.gen(function*() {
        const dir = mkdtempSync(path.join(tmpdir(), "plot-engine-batch-"))
        const requests = path.join(dir, "requests.jsonl")
        const lines = readFileSync(fileURLToPath(new URL("../../examples/batch.jsonl", import.meta.url)), "utf8").trim()
          .split("\n").slice(0, 4)
        writeFileSync(
          requests,
          [...lines, JSON.stringify({ projectId: "lighthouse-keeper", userPrompt: "Too short", targetWordCount: 5 })]
            .join("\n") + "\n"
        )
        const out = path.join(dir, "out", "results.jsonl")
        const report = path.join(dir, "report")
        const run = yield* cli([
          "batch",
          "--requests",
          requests,
          "--projects",
          path.dirname(sampleProjectFile),
          "--out",
          out,
          "--report",
          report,
          "--concurrency",
          "2"
        ])
        // One request was invalid: the batch says so with its exit code.
        expect(run.code).toBe(1)
        expect(run.stdout).toContain("Requests:  5 (4 succeeded, 0 templates, 1 failed)")
        const written = readFileSync(out, "utf8").trim().split("\n").map((line) => JSON.parse(line))
        expect(written.map((w) => w.index).sort()).toEqual([0, 1, 2, 3, 4])
        expect(
          written.filter((w) => w.result !== undefined).every((w) =>
            Schema.is(PlotResult)(Schema.decodeUnknownSync(PlotResult)(w.result))
          )
        ).toBe(true)
        expect(written.find((w) => w.index === 4)).toMatchObject({
          errorType: "validation_error",
          error: { _tag: "RequestValidationError", field: "targetWordCount" }
        })
        const html = readFileSync(path.join(report, "index.html"), "utf8")
        expect(html).toContain("<canvas id=\"throughput\"")
        expect(html).toContain("<canvas id=\"latency\"")
        expect(html).toContain("new Chart(")
        expect(html.length).toBeGreaterThan(100_000) // Chart.js itself, inlined for offline viewing
      }),
    60_000
  )
})

describe("--faults", () => {
  it("takes rates by kind, or chaos for the soak's mix, and refuses what cannot be", () => {
    expect(Cli.parseFaultRates("rate_limit=0.1, reset=0.02")).toEqual(Either.right({ rate_limit: 0.1, reset: 0.02 }))
    expect(Cli.parseFaultRates("chaos")).toEqual(Either.right(Faults.chaosMix))
    expect(Either.isLeft(Cli.parseFaultRates("meteor=0.1"))).toBe(true)
    expect(Either.isLeft(Cli.parseFaultRates("reset=2"))).toBe(true)
    expect(Either.isLeft(Cli.parseFaultRates("reset=0.6,hang=0.6"))).toBe(true)
  })
})
