/**
 * The CLI as a person runs it: a real process, offline on the embedded simulator or against a gateway given
 * by the environment.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { spawn } from "node:child_process"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as Cli from "../../src/cli/Cli.js"
import { PlotResult } from "../../src/Domain.js"
import * as Faults from "../../src/simulator/Faults.js"
import * as GatewaySimulator from "../../src/simulator/GatewaySimulator.js"
import { childEnv, cli, processTimeout, root, type Run } from "../utils/cli.js"
import { sampleProjectFile } from "../utils/fixtures.js"
import { temporaryDirectory } from "../utils/temporaryDirectory.js"

/** The `cli` script of package.json, what `npm run cli` runs. */
const cliScript: string = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")).scripts.cli

/** The child processes of a process, where /proc tells (Linux). */
const childrenOf = (pid: number): ReadonlyArray<string> | undefined => {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
      readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").split(" ").filter((child) => child.trim() !== "")
    )
  } catch {
    return undefined
  }
}

/**
 * Runs the CLI as the `cli` script does (without npm in between) and sends it `signal` once its stderr matches
 * `when`; tells the child processes it had then.
 */
const cliSignaled = (
  args: ReadonlyArray<string>,
  env: Record<string, string>,
  options: { readonly signal: NodeJS.Signals; readonly when: RegExp }
) =>
  Effect.async<Run & { readonly childrenWhenSignaled: ReadonlyArray<string> | undefined }>((resume) => {
    const [, ...nodeArgs] = cliScript.split(" ")
    const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: root, env: childEnv(env) })
    let stdout = ""
    let stderr = ""
    let signaled = false
    let childrenWhenSignaled: ReadonlyArray<string> | undefined
    const timer = setTimeout(() => child.kill("SIGKILL"), processTimeout)
    child.stdout.on("data", (chunk) => void (stdout += chunk))
    child.stderr.on("data", (chunk) => {
      stderr += chunk
      if (!signaled && options.when.test(stderr)) {
        signaled = true
        childrenWhenSignaled = childrenOf(child.pid!)
        child.kill(options.signal)
      }
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code: code ?? -1, stdout, stderr, childrenWhenSignaled }))
    })
    return Effect.sync(() => void child.kill("SIGKILL"))
  })

/** A JSONL file of the first `count` example requests, for OpenAI (the provider the test gateways configure). */
const requestsFile = (count: number) => {
  const dir = temporaryDirectory("plot-engine-batch-")
  const file = path.join(dir, "requests.jsonl")
  const lines = readFileSync(fileURLToPath(new URL("../../examples/batch.jsonl", import.meta.url)), "utf8")
    .trim()
    .split("\n")
    .slice(0, count)
  writeFileSync(
    file,
    lines.map((line) => JSON.stringify({ ...JSON.parse(line), provider: "openai" })).join("\n") + "\n"
  )
  return { dir, file }
}

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
    processTimeout
  )

  it.effect(
    "stops with a usage error naming the field of a bad deployments file, before any call",
    () =>
      Effect.gen(function*() {
        const file = path.join(temporaryDirectory("plot-engine-deployments-"), "deployments.json")
        writeFileSync(file, JSON.stringify({ deployments: [{ id: "eu", dialect: "gemini", apiKey: "sk-eu-0123" }] }))
        const run = yield* cli(generate, { PLOT_ENGINE_DEPLOYMENTS_FILE: file })
        expect(run.code).toBe(2)
        expect(run.stderr).toContain(`deployments[0].dialect: must be "openai-responses" or "anthropic-messages"`)
        expect(run.stderr).not.toContain("embedded gateway simulator")
      }),
    processTimeout
  )

  it.effect(
    "stops with the configuration error alone when the engine refuses one: the simulator's line is not printed",
    () =>
      Effect.gen(function*() {
        const run = yield* cli(generate, { PLOT_ENGINE_OPENAI_RPM: "0" })
        expect(run.code).toBe(2)
        // Before (found by a new user's review), "Offline: ... embedded gateway simulator" came first.
        expect(run.stderr.trim().split("\n")).toEqual([expect.stringContaining("PLOT_ENGINE_OPENAI_RPM")])
      }),
    processTimeout
  )

  it.effect("prints the stages on stderr, the plot and a summary on stdout", () =>
    Effect.gen(function*() {
      const run = yield* cli([...generate, "--provider", "anthropic"])
      expect(run.code).toBe(0)
      expect(run.stderr).toContain("[ 10%] Gathering relevant project context...")
      expect(run.stdout).not.toContain("Gathering relevant project context")
      expect(run.stdout).toMatch(/\n# .+\n/)
      expect(run.stdout).toMatch(/Model: {5}claude-haiku-4-5 \(User preference\)/)
      expect(run.stdout).toMatch(/Cost: {6}\$0\.\d+/)
    }), processTimeout)
})

describe("plot-engine usage errors", () => {
  it.effect(
    "say in one sentence on stderr which flag is wrong, print nothing on stdout and exit 2",
    () =>
      Effect.gen(function*() {
        const noPrompt = yield* cli(["generate", "--project", sampleProjectFile])
        const noFile = yield* cli(["generate", "--project", "no-such-project.json", "--prompt", "What next?"])
        const tooFewWords = yield* cli([...generate, "--words", "5"])
        for (const [run, flag] of [[noPrompt, "--prompt"], [noFile, "--project"], [tooFewWords, "--words"]] as const) {
          expect(run.code).toBe(2)
          expect(run.stdout).toBe("")
          expect(run.stderr.trim().split("\n")).toHaveLength(1)
          expect(run.stderr).toContain(flag)
        }
      }),
    3 * processTimeout
  )

  it.effect(
    "are written without colours into a pipe, as the help is",
    () =>
      Effect.gen(function*() {
        const help = yield* cli(["--help"])
        const badFlag = yield* cli([
          "generate",
          "--project",
          sampleProjectFile,
          "--prompt",
          "What next?",
          "--words",
          "x"
        ])
        expect(help.code).toBe(0)
        expect(help.stdout).toContain("USAGE")
        expect(badFlag.code).toBe(2)
        expect(badFlag.stderr).toContain("--words")
        for (const written of [help.stdout, help.stderr, badFlag.stdout, badFlag.stderr]) {
          expect(written).not.toContain("\x1b[")
        }
      }),
    2 * processTimeout
  )
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
  const file = path.join(temporaryDirectory("plot-engine-cli-"), "huge-novel.json")
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
      processTimeout
    )

    it.effect(
      "reads a deployments file: a deployment whose key is refused moves the call to the other at once",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const before = yield* simulator.stats
          const file = path.join(temporaryDirectory("plot-engine-deployments-"), "deployments.json")
          const deployment = (id: string, keyVariable: string) => ({
            id,
            dialect: "openai-responses",
            baseUrl: simulator.openaiBaseUrl,
            apiKeyEnv: keyVariable,
            models: [{ model: "gpt-4.1" }]
          })
          writeFileSync(
            file,
            JSON.stringify({
              // The second is a standby (weight 0): called only when the first has failed.
              deployments: [deployment("org-a", "ORG_A_KEY"), { ...deployment("org-b", "ORG_B_KEY"), weight: 0 }]
            })
          )
          const run = yield* cli([...generate, "--provider", "openai", "--model", "gpt-4.1", "--json"], {
            PLOT_ENGINE_DEPLOYMENTS_FILE: file,
            ORG_A_KEY: "sk-wrong-key-654321",
            ORG_B_KEY: "sk-right-key-123456"
          })
          expect(run.code).toBe(0)
          expect(run.stderr).not.toContain("embedded gateway simulator")
          const result = JSON.parse(run.stdout)
          expect([result.model, result.isTemplate, result.retryCount]).toEqual(["gpt-4.1", false, 1])
          const after = yield* simulator.stats
          expect(after.requests - before.requests).toBe(2)
          expect((after.byStatus["401"] ?? 0) - (before.byStatus["401"] ?? 0)).toBe(1)
          expect(run.stderr + run.stdout).not.toContain("sk-wrong-key-654321")

          // `batch` reads the same file: each request's refused call moves to the standby too (the model chosen for
          // each is among those the deployments serve: gpt-4.1).
          const { dir, file: requests } = requestsFile(2)
          const out = path.join(dir, "out.jsonl")
          const batch = yield* cli(
            ["batch", "--requests", requests, "--projects", path.dirname(sampleProjectFile), "--out", out],
            { PLOT_ENGINE_DEPLOYMENTS_FILE: file, ORG_A_KEY: "sk-wrong-key-654321", ORG_B_KEY: "sk-right-key-123456" }
          )
          expect(batch.code).toBe(0)
          expect(batch.stdout).toContain("Requests:  2 (2 succeeded, 0 templates, 0 failed)")
          const final = yield* simulator.stats
          expect((final.byStatus["401"] ?? 0) - (after.byStatus["401"] ?? 0)).toBe(2)
        }),
      processTimeout
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
      }), processTimeout)

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
      processTimeout
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
          const dir = temporaryDirectory("plot-engine-batch-")
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
      processTimeout
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
        expect(run.stderr).toContain(
          "We're experiencing high demand. Your request will retry automatically in a moment... (rate_limit from openai/gpt-4.1-mini; attempt 2 in 2.5 s)"
        )
        expect(run.stdout).toContain("Retries:   1")
        expect(run.stdout).not.toContain("We're experiencing high demand")
        expect((yield* simulator.stats).requests - before).toBe(2)
        expect(Date.now() - started).toBeGreaterThanOrEqual(2_500)
      }), processTimeout)

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
      }), processTimeout)

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
      }), processTimeout)
  }
)

describe("plot-engine batch, offline", () => {
  it.effect(
    "writes one line per request (results and typed errors) and an HTML report with its charts",
    () =>
      Effect.gen(function*() {
        const dir = temporaryDirectory("plot-engine-batch-")
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
    processTimeout
  )
})

const failingKey = "sk-failing-key-123456"

layer(GatewaySimulator.layer({ apiKeys: { openai: failingKey }, faults: { rates: { server_error: 1 } } }))(
  "plot-engine generate, when the AI fails",
  (it) => {
    const env = (simulator: GatewaySimulator.Service) => ({
      OPENAI_API_KEY: failingKey,
      OPENAI_BASE_URL: simulator.openaiBaseUrl,
      PLOT_ENGINE_MAX_ATTEMPTS: "2",
      PLOT_ENGINE_MAX_RETRY_DELAY: "50 millis"
    })

    it.effect(
      "prints one PlotResult through the template fallback with --json, and every log (debug too, --log-level after the subcommand) on stderr",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const run = yield* cli([...generate, "--json", "--log-level", "debug"], env(simulator))
          expect(run.code).toBe(0)
          const result = Schema.decodeUnknownSync(PlotResult)(JSON.parse(run.stdout))
          expect(result.isTemplate).toBe(true)
          expect(run.stderr).toContain("Generation failed; using the template fallback")
          expect(run.stderr).toMatch(/DEBUG .*Prompt/)
        }),
      processTimeout
    )

    it.effect(
      "batch: runs the alert rules, to a line on stderr and to the webhook of PLOT_ENGINE_ALERT_WEBHOOK_URL",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const received: Array<unknown> = []
          const webhook = createServer((request, response) => {
            let body = ""
            request.on("data", (chunk) => (body += chunk))
            request.on("end", () => {
              received.push(JSON.parse(body))
              response.writeHead(204).end()
            })
          })
          const port = yield* Effect.async<number>((resume) =>
            void webhook.listen(0, "127.0.0.1", () => resume(Effect.succeed((webhook.address() as AddressInfo).port)))
          )
          const { file } = requestsFile(2)
          const run = yield* cli(
            ["batch", "--requests", file, "--projects", path.dirname(sampleProjectFile), "--concurrency", "1"],
            { ...env(simulator), PLOT_ENGINE_ALERT_WEBHOOK_URL: `http://127.0.0.1:${port}/alerts` }
          ).pipe(Effect.ensuring(Effect.sync(() => webhook.close())))
          expect(run.code).toBe(0)
          expect(run.stdout).toContain("Requests:  2 (0 succeeded, 2 templates, 0 failed)")
          // Every request fell back to the template: above 20 %, raised once; the batch ends before it resolves.
          expect(run.stderr.match(/Alert raised: template_rate/g)).toHaveLength(1)
          expect(received).toMatchObject([{ rule: "template_rate", state: "raised", value: 1, threshold: 0.2 }])
        }),
      processTimeout
    )

    it.effect(
      "prints nothing on stdout when it fails for good with --no-fallback, and exits 1",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const run = yield* cli([...generate, "--json", "--no-fallback"], env(simulator))
          expect(run.code).toBe(1)
          expect(run.stdout).toBe("")
          expect(run.stderr).toContain("(server_error)")
        }),
      processTimeout
    )
  }
)

const slowKey = "sk-slow-key-123456"

// The simulator's latency runs on its Clock: the real one here, not the TestClock (nobody would advance it).
layer(GatewaySimulator.layer({ apiKeys: { openai: slowKey }, faults: { latencyMs: 300 } }), {
  excludeTestServices: true
})(
  "plot-engine batch, interrupted and resumed",
  (it) => {
    const env = (simulator: GatewaySimulator.Service) => ({
      OPENAI_API_KEY: slowKey,
      OPENAI_BASE_URL: simulator.openaiBaseUrl
    })
    const indexesIn = (file: string) =>
      readFileSync(file, "utf8").trim().split("\n").map((line) => JSON.parse(line).index as number)

    it("is run by the process npm starts: no wrapper in between to signal instead", () => {
      expect(cliScript.split(" ")[0]).toBe("node")
    })

    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      it.effect(
        `stops on ${signal} with whole lines written, the summary and what is left on stderr, exit code ${code}`,
        () =>
          Effect.gen(function*() {
            const simulator = yield* GatewaySimulator.GatewaySimulator
            const requests = requestsFile(12)
            const out = path.join(requests.dir, "results.jsonl")
            const run = yield* cliSignaled(
              [
                "batch",
                "--requests",
                requests.file,
                "--projects",
                path.dirname(sampleProjectFile),
                "--out",
                out,
                "--concurrency",
                "1",
                "--json"
              ],
              env(simulator),
              { signal, when: / 1\/12 / }
            )
            // The process signaled is the one doing the work.
            expect(run.childrenWhenSignaled ?? []).toEqual([])
            expect(run.code).toBe(code)
            expect(run.stdout).toBe("")
            expect(run.stderr).toMatch(/Requests: {2}12 \(\d+ succeeded, 0 templates, 0 failed, \d+ unfinished\)/)
            const interrupted = run.stderr.match(/Interrupted after (\d+) of 12 requests; rerun with --resume/)
            expect(interrupted).not.toBeNull()
            const finished = Number(interrupted![1])
            expect(finished).toBeGreaterThanOrEqual(1)
            expect(finished).toBeLessThan(12)
            expect(indexesIn(out)).toHaveLength(finished)
          }),
        processTimeout
      )
    }

    it.effect(
      "resumes: skips the indexes already in --out, appends the others, and counts both in its JSON summary",
      () =>
        Effect.gen(function*() {
          const simulator = yield* GatewaySimulator.GatewaySimulator
          const requests = requestsFile(4)
          const out = path.join(requests.dir, "results.jsonl")
          // Requests 0 and 2 finished before; the line of request 3 was cut short as the process died.
          const earlier = [JSON.stringify({ index: 0, result: {} }), JSON.stringify({ index: 2, result: {} })]
          writeFileSync(out, earlier.join("\n") + "\n" + "{\"index\":3,\"res")
          const before = (yield* simulator.stats).requests
          const run = yield* cli(
            [
              "batch",
              "--requests",
              requests.file,
              "--projects",
              path.dirname(sampleProjectFile),
              "--out",
              out,
              "--resume",
              "--json"
            ],
            env(simulator)
          )
          expect(run.code).toBe(0)
          expect(JSON.parse(run.stdout)).toMatchObject({
            requests: 4,
            skipped: 2,
            succeeded: 2,
            failed: 0,
            unfinished: 0
          })
          expect(readFileSync(out, "utf8").split("\n").slice(0, 2)).toEqual(earlier)
          expect(indexesIn(out).sort()).toEqual([0, 1, 2, 3])
          expect((yield* simulator.stats).requests - before).toBe(2)
        }),
      processTimeout
    )
  }
)

describe("--faults", () => {
  it("takes rates by kind, or chaos for the soak's mix, and refuses what cannot be", () => {
    expect(Cli.parseFaultRates("rate_limit=0.1, reset=0.02")).toEqual(Either.right({ rate_limit: 0.1, reset: 0.02 }))
    expect(Cli.parseFaultRates("chaos")).toEqual(Either.right(Faults.chaosMix))
    expect(Either.isLeft(Cli.parseFaultRates("meteor=0.1"))).toBe(true)
    expect(Either.isLeft(Cli.parseFaultRates("reset=2"))).toBe(true)
    expect(Either.isLeft(Cli.parseFaultRates("reset=0.6,hang=0.6"))).toBe(true)
  })
})
