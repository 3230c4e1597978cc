/**
 * Benchmark `fleet`: the engine run as an operator runs it, in real time. The gateway simulator listens on
 * loopback and enforces 200 requests and 360,000 tokens a minute per key, sending no rate-limit headers (as behind
 * a proxy that strips them; a 429 keeps its retry-after). The real CLI's `batch` runs against it as child
 * processes:
 *
 * - `tooHigh`: one batch with the limiter configured 3x too high (600 RPM, 1,080,000 TPM);
 * - `shared`: three batches at once sharing the key through a real `redis-server` (limiter at the quota);
 * - `sharedTooHigh`: the same three configured 3x too high (what only 429s can teach them, together);
 * - `metrics`: the example server's `GET /metrics` after a few generations;
 * - `redisOutage`: three batches over Redis, Redis killed halfway and started again 10 s later.
 *
 * The time the quota allows is the least a batch can take: both buckets start full, so `(used - capacity) / rate`
 * for each limit, the larger binding (`quotaSeconds`); `quotaSecondsPlain` is `used / rate` without the first
 * minute's burst. Refusals are counted at the gateway (the 429s it sent) and in the batches' output (each result's
 * `rateLimitErrors`, which also counts the limiter's own refusals).
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { fileURLToPath } from "node:url"
import * as GatewaySimulator from "../src/simulator/GatewaySimulator.js"

const requestsPerMinute = 200
const tokensPerMinute = 360_000
/** Each answer takes this long at the gateway: the limiter's 5 permits never bind at 200 a minute. */
const latencyMs = 300
const model = "gpt-4.1"
const maxContextTokens = 600
const root = fileURLToPath(new URL("../", import.meta.url))
const work = fileURLToPath(new URL("./_tmp/fleet/", import.meta.url))

const prompts = [
  "What does Mara find under the floor of the lamp room?",
  "Isolde Varga confronts Elias Thorne at the Drowned Bell.",
  "Three ways the bargain with the sea could be broken.",
  "Outline the storm night when the second lamp is lit.",
  "Mara reads her mother's last logbook entry aloud.",
  "The harbour master lies about the night of the wreck."
]
const kinds = ["outline", "scene_beats", "suggestions"] as const

/** `count` requests pinned to one model (a hop to another model would meet another quota). */
const requestsFile = (name: string, count: number, offset = 0) => {
  const file = `${work}${name}.jsonl`
  const lines = Array.from({ length: count }, (_, i) =>
    JSON.stringify({
      projectId: "lighthouse-keeper",
      userPrompt: `${prompts[(offset + i) % prompts.length]} (request ${offset + i})`,
      kind: kinds[(offset + i) % kinds.length],
      targetWordCount: 150,
      provider: "openai",
      model
    }))
  writeFileSync(file, lines.join("\n") + "\n")
  return file
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

interface Simulator {
  readonly baseUrl: string
  readonly stats: () => Promise<GatewaySimulator.Stats>
  readonly close: () => Promise<void>
}

const startSimulator = async (): Promise<Simulator> => {
  const scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(
    GatewaySimulator.layer({
      quotas: { openai: { requestsPerMinute, tokensPerMinute }, rateLimitHeaders: false },
      faults: { latencyMs }
    }),
    scope
  ))
  const simulator = Context.get(context, GatewaySimulator.GatewaySimulator)
  return {
    baseUrl: simulator.openaiBaseUrl,
    stats: () => Effect.runPromise(simulator.stats),
    close: () => Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

interface Redis {
  readonly url: string
  readonly stop: () => void
  readonly start: () => Promise<void>
}

/** A `redis-server` of this run's own, on a free port, persisting nothing. */
const startRedis = async (): Promise<Redis> => {
  const port = await freePort()
  const start = async () => {
    const started = spawnSync("redis-server", [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "yes"
    ])
    if (started.status !== 0) throw new Error(`redis-server did not start: ${String(started.stderr)}`)
    for (let i = 0; i < 50; i++) {
      if (spawnSync("redis-cli", ["-p", String(port), "ping"]).stdout?.toString().trim() === "PONG") return
      await sleep(100)
    }
    throw new Error(`redis-server on ${port} does not answer`)
  }
  await start()
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => void spawnSync("redis-cli", ["-p", String(port), "shutdown", "nosave"]),
    start
  }
}

interface BatchExit {
  readonly code: number | null
  readonly stderr: string
  /** When the process ended, and the batch's own elapsed time from its summary (without the process's start). */
  readonly exitedAt: number
  readonly batchElapsedMs: number | undefined
  /** The limiter's warnings: Redis unavailable (once per outage), and back. */
  readonly storeUnavailable: number
  readonly storeBack: number
  readonly storeOutageAt: ReadonlyArray<number>
}

interface BatchRun {
  readonly out: string
  readonly child: ChildProcess
  readonly done: Promise<BatchExit>
}

/** The real CLI's `batch` in a process of its own, against the simulator, with `env` over a clean environment. */
const startBatch = (name: string, requests: string, env: Record<string, string>): BatchRun => {
  const out = `${work}${name}.out.jsonl`
  rmSync(out, { force: true })
  const child = spawn(process.execPath, [
    "--import",
    "tsx",
    "src/cli/main.ts",
    "batch",
    "--requests",
    requests,
    "--out",
    out,
    "--concurrency",
    "32",
    "--json"
  ], {
    cwd: root,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stderr = ""
  let storeUnavailable = 0
  const storeOutageAt: Array<number> = []
  let storeBack = 0
  child.stderr!.on("data", (chunk) => {
    const text = String(chunk)
    const outages = text.split("Rate limiter store unavailable").length - 1
    storeUnavailable += outages
    for (let i = 0; i < outages; i++) storeOutageAt.push(Date.now())
    storeBack += text.split("Rate limiter store answers again").length - 1
    stderr = (stderr + text).slice(-4_000)
  })
  let stdout = ""
  child.stdout!.on("data", (chunk) => void (stdout += String(chunk)))
  const done = new Promise<BatchExit>((resolve) =>
    child.on("close", (code) => {
      let batchElapsedMs: number | undefined
      try {
        batchElapsedMs = JSON.parse(stdout).elapsedMs
      } catch {
        batchElapsedMs = undefined
      }
      resolve({ code, stderr, exitedAt: Date.now(), batchElapsedMs, storeUnavailable, storeBack, storeOutageAt })
    })
  )
  return { out, child, done }
}

/** What a batch's output says: whole lines, results, templates, typed errors, 429s met, durations. */
const readOutput = (file: string) => {
  const text = readFileSync(file, "utf8")
  const lines = text.split("\n").filter((line) => line !== "")
  let whole = 0
  let succeeded = 0
  let templates = 0
  let errors = 0
  let rateLimitErrors = 0
  let maxDurationMs = 0
  const errorTypes: Record<string, number> = {}
  for (const line of lines) {
    let parsed: any
    try {
      parsed = JSON.parse(line)
    } catch {
      continue
    }
    whole++
    if (parsed.result !== undefined) {
      const metrics = parsed.result.metrics
      if (parsed.result.isTemplate === true) templates++
      else succeeded++
      rateLimitErrors += metrics?.rateLimitErrors ?? 0
      maxDurationMs = Math.max(maxDurationMs, metrics?.requestDurationMs ?? 0)
    } else {
      errors++
      const type = String(parsed.error?._tag ?? parsed.error?.type ?? "unknown")
      errorTypes[type] = (errorTypes[type] ?? 0) + 1
    }
  }
  return {
    lines: lines.length,
    whole,
    endsWithNewline: text === "" || text.endsWith("\n"),
    succeeded,
    templates,
    errors,
    errorTypes,
    rateLimitErrors,
    maxDurationMs
  }
}

const round = (value: number, digits = 2) => Number(value.toFixed(digits))

/** The least time the quota allows for what the gateway served, from full buckets; and the plain `used / rate`. */
const quotaTime = (requests: number, tokens: number) => {
  const byRequests = Math.max(0, requests - requestsPerMinute) / requestsPerMinute * 60
  const byTokens = Math.max(0, tokens - tokensPerMinute) / tokensPerMinute * 60
  return {
    quotaSeconds: round(Math.max(byRequests, byTokens), 1),
    quotaSecondsPlain: round(Math.max(requests / requestsPerMinute, tokens / tokensPerMinute) * 60, 1),
    binding: tokens / tokensPerMinute > requests / requestsPerMinute ? "tokens per minute" : "requests per minute",
    tokensPerRequest: Math.round(tokens / Math.max(1, requests))
  }
}

const rpm = (configured: number) => ({
  PLOT_ENGINE_OPENAI_RPM: String(configured * requestsPerMinute),
  PLOT_ENGINE_OPENAI_TPM: String(configured * tokensPerMinute)
})

interface ScenarioOptions {
  readonly name: string
  readonly processes: number
  readonly requestsEach: number
  /** The limiter's quota as a multiple of the gateway's. */
  readonly configured: number
  readonly redis: boolean
  /** Kill Redis when this share of the requests is written, start it again `restartAfterMs` later. */
  readonly outage?: { readonly at: number; readonly restartAfterMs: number } | undefined
  readonly deadlineSeconds?: number | undefined
}

const scenario = async (options: ScenarioOptions) => {
  // `FLEET_SCALE=0.25` runs smaller batches (a quick look; the quota's burst then weighs more).
  const requestsEach = Math.max(1, Math.round(options.requestsEach * Number(process.env.FLEET_SCALE ?? 1)))
  const simulator = await startSimulator()
  const redis = options.redis ? await startRedis() : undefined
  const env = {
    OPENAI_API_KEY: "sk-fleet-one-key",
    OPENAI_BASE_URL: simulator.baseUrl,
    // About 2,400 tokens a request (prompt plus max output): 150 a minute by tokens, 200 by requests.
    PLOT_ENGINE_MAX_CONTEXT_TOKENS: String(maxContextTokens),
    ...rpm(options.configured),
    ...(options.deadlineSeconds === undefined ? {} : { PLOT_ENGINE_DEADLINE: `${options.deadlineSeconds} seconds` }),
    ...(redis === undefined ? {} : {
      PLOT_ENGINE_REDIS_URL: redis.url,
      PLOT_ENGINE_REDIS_LOCAL_SHARE: String(1 / options.processes)
    })
  }
  const startedAt = Date.now()
  const cpuBefore = process.cpuUsage()
  const batches = Array.from(
    { length: options.processes },
    (_, i) =>
      startBatch(
        `${options.name}-${i}`,
        requestsFile(`${options.name}-${i}`, requestsEach, i * requestsEach),
        env
      )
  )
  const total = options.processes * requestsEach
  let outage: { killedAtSeconds: number; restartedAtSeconds: number | null } | undefined
  const watchOutage = async () => {
    if (options.outage === undefined || redis === undefined) return
    const written = () =>
      batches.reduce((sum, b) => {
        try {
          return sum + readFileSync(b.out, "utf8").split("\n").filter((l) => l !== "").length
        } catch {
          return sum
        }
      }, 0)
    while (written() < options.outage.at * total) await sleep(200)
    redis.stop()
    const killedAtSeconds = round((Date.now() - startedAt) / 1_000, 1)
    outage = { killedAtSeconds, restartedAtSeconds: null }
    await sleep(options.outage.restartAfterMs)
    await redis.start()
    outage = { killedAtSeconds, restartedAtSeconds: round((Date.now() - startedAt) / 1_000, 1) }
  }
  // What the gateway served and refused, every 5 s: when the 429s came.
  const timeline: Array<{ readonly second: number; readonly served: number; readonly refused: number }> = []
  const sampler = setInterval(() => {
    void simulator.stats().then((s) =>
      timeline.push({
        second: Math.round((Date.now() - startedAt) / 1_000),
        served: s.byStatus["200"] ?? 0,
        refused: s.byStatus["429"] ?? 0
      })
    )
  }, 5_000)
  const [exits] = await Promise.all([Promise.all(batches.map((b) => b.done)), watchOutage()])
  clearInterval(sampler)
  const wallSeconds = (Date.now() - startedAt) / 1_000
  // From the first batch's start to the last one's end, each process's start-up (a few seconds under tsx) left out.
  const elapsedSeconds = (Math.max(...exits.map((e) => e.exitedAt)) -
    Math.min(...exits.map((e) => e.exitedAt - (e.batchElapsedMs ?? e.exitedAt - startedAt)))) / 1_000
  const stats = await simulator.stats()
  await simulator.close()
  redis?.stop()
  const outputs = batches.map((b) => readOutput(b.out))
  const served = stats.byStatus["200"] ?? 0
  const refusedAtGateway = stats.byStatus["429"] ?? 0
  const quota = quotaTime(served, stats.requestedTokens)
  const sum = (pick: (o: ReturnType<typeof readOutput>) => number) => outputs.reduce((s, o) => s + pick(o), 0)
  const failed = exits.filter((e) => e.code !== 0)
  return {
    scenario: options.name,
    processes: options.processes,
    requests: total,
    configured: `${options.configured * requestsPerMinute} RPM / ${options.configured * tokensPerMinute} TPM`,
    elapsedSeconds: round(elapsedSeconds, 1),
    wallSeconds: round(wallSeconds, 1),
    ...quota,
    elapsedOverQuota: round(elapsedSeconds / Math.max(1, quota.quotaSeconds)),
    elapsedOverQuotaPlain: round(elapsedSeconds / quota.quotaSecondsPlain),
    gatewayRequests: stats.requests,
    gatewayServed: served,
    refusedAtGateway,
    refusedShare: round(refusedAtGateway / Math.max(1, stats.requests), 4),
    refusedInOutput: sum((o) => o.rateLimitErrors),
    succeeded: sum((o) => o.succeeded),
    templates: sum((o) => o.templates),
    errors: sum((o) => o.errors),
    errorTypes: outputs.reduce<Record<string, number>>((all, o) => {
      for (const [type, n] of Object.entries(o.errorTypes)) all[type] = (all[type] ?? 0) + n
      return all
    }, {}),
    linesWhole: sum((o) => o.whole) === sum((o) => o.lines) && outputs.every((o) => o.endsWithNewline),
    lines: sum((o) => o.lines),
    maxGenerationSeconds: round(Math.max(...outputs.map((o) => o.maxDurationMs)) / 1_000, 1),
    exitCodes: exits.map((e) => e.code),
    storeOutagesLogged: exits.reduce((sum, e) => sum + e.storeUnavailable, 0),
    storeBackLogged: exits.reduce((sum, e) => sum + e.storeBack, 0),
    storeOutagesAtSeconds: exits.flatMap((e) => e.storeOutageAt.map((at) => round((at - startedAt) / 1_000, 1))),
    ...(failed.length === 0 ? {} : { stderrTail: failed[0]!.stderr.slice(-1_000) }),
    ...(outage === undefined ? {} : { outage }),
    timeline: timeline.map((t) => `${t.second}s:${t.served}/${t.refused}`).join(" "),
    runnerCpuSeconds: round((process.cpuUsage(cpuBefore).user + process.cpuUsage(cpuBefore).system) / 1e6, 1)
  }
}

/** The example server against the simulator: a few generations, then `GET /metrics`. */
const metricsScenario = async () => {
  const simulator = await startSimulator()
  const port = await freePort()
  const server = spawn(process.execPath, ["--import", "tsx", "examples/http-server.ts"], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      PORT: String(port),
      OPENAI_API_KEY: "sk-fleet-metrics",
      OPENAI_BASE_URL: simulator.baseUrl
    },
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  server.stderr!.on("data", (chunk) => void (stderr = (stderr + String(chunk)).slice(-4_000)))
  const base = `http://127.0.0.1:${port}`
  try {
    for (let i = 0; i < 150; i++) {
      const up = await fetch(`${base}/health`).then((r) => r.ok, () => false)
      if (up) break
      await sleep(200)
    }
    const generations = 5
    const statuses: Array<number> = []
    for (let i = 0; i < generations; i++) {
      const response = await fetch(`${base}/plots`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          projectId: "lighthouse-keeper",
          userPrompt: `${prompts[i % prompts.length]}`,
          kind: "outline",
          targetWordCount: 300,
          provider: "openai",
          model
        })
      })
      statuses.push(response.status)
      await response.arrayBuffer()
    }
    const metrics = await fetch(`${base}/metrics`)
    const text = await metrics.text()
    const counted = text.split("\n")
      .filter((line) => line.startsWith("plot_engine_generations_total"))
    const total = counted.reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0)
    return {
      generations,
      statuses,
      metricsStatus: metrics.status,
      contentType: metrics.headers.get("content-type"),
      generationsTotal: total,
      countsGenerations: metrics.status === 200 && total === generations,
      lines: counted
    }
  } finally {
    server.kill("SIGTERM")
    await new Promise((resolve) => server.once("exit", resolve))
    await simulator.close()
    if (server.exitCode !== 0 && server.exitCode !== 143 && stderr !== "") console.error(stderr)
  }
}

const scenarios: Record<string, () => Promise<Record<string, unknown>>> = {
  right: () => scenario({ name: "right", processes: 1, requestsEach: 300, configured: 1, redis: false }),
  tooHigh: () => scenario({ name: "tooHigh", processes: 1, requestsEach: 300, configured: 3, redis: false }),
  shared: () => scenario({ name: "shared", processes: 3, requestsEach: 100, configured: 1, redis: true }),
  sharedTooHigh: () => scenario({ name: "sharedTooHigh", processes: 3, requestsEach: 100, configured: 3, redis: true }),
  metrics: metricsScenario,
  redisOutage: () =>
    scenario({
      name: "redisOutage",
      processes: 3,
      requestsEach: 100,
      configured: 1,
      redis: true,
      outage: { at: 0.5, restartAfterMs: 10_000 },
      deadlineSeconds: 120
    })
}

export const run = async () => {
  mkdirSync(work, { recursive: true })
  // `FLEET_SCENARIOS=tooHigh,metrics` runs some of them.
  const only = process.env.FLEET_SCENARIOS?.split(",").filter((name) => name !== "")
  const figures: Record<string, unknown> = {
    gateway:
      `${requestsPerMinute} RPM / ${tokensPerMinute} TPM per key, no rate-limit headers, ${latencyMs} ms an answer`
  }
  for (const [name, start] of Object.entries(scenarios)) {
    if (only !== undefined && !only.includes(name)) continue
    console.log(`fleet: ${name}...`)
    figures[name] = await start()
    console.log(JSON.stringify(figures[name]))
  }
  return figures
}
