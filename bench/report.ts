/**
 * The performance report: `bench/results/report.md` with SVG charts drawn by Vega-Lite, from the figures each
 * benchmark wrote under `bench/results/` (a benchmark not run yet is left out).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import * as vega from "vega"
import * as vegaLite from "vega-lite"

const results = new URL("./results/", import.meta.url)

type Figures = Record<string, any>

const load = (name: string): Figures | undefined => {
  const file = new URL(`${name}.json`, results)
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Figures) : undefined
}

/** Renders a Vega-Lite spec to `results/<name>.svg` and returns the Markdown that shows it. */
const chart = async (name: string, title: string, spec: vegaLite.TopLevelSpec): Promise<string> => {
  const view = new vega.View(
    vega.parse(vegaLite.compile({ width: 560, height: 260, ...spec } as vegaLite.TopLevelSpec).spec),
    {
      renderer: "none"
    }
  )
  writeFileSync(new URL(`${name}.svg`, results), await view.toSVG())
  view.finalize()
  return `![${title}](${name}.svg)\n`
}

/** Bars per provider, one beside the other for each value of `by`, of height `value`. */
const barsByProvider = (by: string, value: string, valueTitle: string) => ({
  mark: "bar" as const,
  encoding: {
    x: { field: "provider", type: "nominal" as const, title: null, axis: { labelAngle: 0 } },
    xOffset: { field: by, type: "nominal" as const },
    y: { field: value, type: "quantitative" as const, title: valueTitle },
    color: { field: by, type: "nominal" as const, title: by }
  }
})

const table = (rows: ReadonlyArray<Record<string, unknown>>): string => {
  const columns = Object.keys(rows[0] ?? {})
  return [
    `| ${columns.join(" | ")} |`,
    `| ${columns.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${columns.map((c) => String(row[c])).join(" | ")} |`)
  ].join("\n") + "\n"
}

const sections: Record<string, (f: Figures) => Promise<string>> = {
  pipeline: async (f) =>
    [
      "## Pipeline overhead\n",
      "`generate` on an instant in-process model against a bare `LanguageModel.generateText` on the same model, ",
      "one request at a time, the four warm paths taking turns in batches of 1,000 (seven rounds, the median batch); ",
      "microseconds of CPU (user and system, GC included) per request. ",
      "Warm: one engine, its token cache filled; cold: a fresh engine per request. ",
      "`bareGenerateObjectUs` is the structured call the engine makes, alone (`generateText` forcing the outline ",
      "tool; `@effect/ai` is patched to make its response decoders once per toolkit). ",
      "`timedTracedObjectUs` is that call with a timeout and a span, as any caller that bounds and traces its ",
      "calls makes it; `warmOverheadOverTimedTracedUs` is then what the engine's own work costs (context, model ",
      "choice, prompt, breaker, validation, rendering, metrics, result). ",
      `Target: ${f.target}.\n\n`,
      table(f.rows),
      "\n",
      await chart("pipeline", "Microseconds per request", {
        data: {
          values: f.rows.flatMap((r: any) => [
            { project: r.project, path: "bare generateText", us: r.bareGenerateTextUs },
            { project: r.project, path: "bare structured call", us: r.bareGenerateObjectUs },
            { project: r.project, path: "structured call, timed and traced", us: r.timedTracedObjectUs },
            { project: r.project, path: "engine, warm", us: r.engineWarmUs },
            { project: r.project, path: "engine, cold", us: r.engineColdUs }
          ])
        },
        height: 160,
        mark: { type: "point", filled: true, size: 140 },
        encoding: {
          y: { field: "project", type: "nominal", title: null },
          x: { field: "us", type: "quantitative", title: "µs per request (log scale)", scale: { type: "log" } },
          color: { field: "path", type: "nominal", title: null },
          shape: { field: "path", type: "nominal", title: null }
        }
      } as any)
    ].join(""),

  "http-path": async (f) =>
    [
      "## HTTP path\n",
      `\`generate\` through the real \`@effect/ai-openai\` client to the simulator (its own process, loopback), `,
      `beside the official \`openai\` SDK sending the same request with nothing around it; model ${f.model}. `,
      `Throughput ratio engine / SDK: ${Object.entries(f.throughputRatio).map(([c, r]) => `${c} ${r}`).join(", ")}; `,
      `the \`@effect/ai\` client alone / SDK: ${
        Object.entries(f.clientAloneRatio ?? {}).map(([c, r]) => `${c} ${r}`).join(", ")
      }. `,
      "On loopback, with the simulator on the same cores, throughput is bound by CPU: `clientCpuMsPerRequest` is ",
      "what a request cost this process (the client, the engine around it, GC), `simulatorCpuMsPerRequest` what it ",
      "cost the simulator's. ",
      `Target: ${f.target}.\n\n`,
      table(f.rows),
      "\n",
      await chart("http-path", "Requests per second", {
        data: { values: f.rows },
        mark: "bar",
        encoding: {
          x: { field: "concurrency", type: "ordinal", title: "concurrency", axis: { labelAngle: 0 } },
          xOffset: { field: "client", type: "nominal" },
          y: { field: "throughputPerSecond", type: "quantitative", title: "requests / s" },
          color: { field: "client", type: "nominal", title: null }
        }
      } as any),
      "\n",
      await chart("http-path-cpu", "Client-side CPU per request", {
        data: { values: f.rows.filter((r: any) => r.clientCpuMsPerRequest !== undefined) },
        mark: "bar",
        encoding: {
          x: { field: "concurrency", type: "ordinal", title: "concurrency", axis: { labelAngle: 0 } },
          xOffset: { field: "client", type: "nominal" },
          y: { field: "clientCpuMsPerRequest", type: "quantitative", title: "client-side CPU ms / request" },
          color: { field: "client", type: "nominal", title: null }
        }
      } as any)
    ].join(""),

  faults: async (f) =>
    [
      "## Under faults\n",
      "The chaos mix of the reliability soak (10 % 429, 5 % 500, 3 % 529, 2 % each of hangs, resets, malformed ",
      "JSON and mid-stream errors), the engine against the official SDK's own retries. Success is real content; ",
      `the engine's template fallbacks are counted apart. Target: ${f.target}.\n\n`,
      table(f.rows),
      "\n",
      await chart("faults", "Latency distribution under faults", {
        data: {
          values: [
            ...f.latencies.engine.map((ms: number) => ({ client: "engine", ms: Math.max(1, ms) })),
            ...f.latencies.sdk.map((ms: number) => ({ client: "openai SDK", ms: Math.max(1, ms) }))
          ]
        },
        transform: [
          { sort: [{ field: "ms" }], window: [{ op: "cume_dist", as: "fraction" }], groupby: ["client"] }
        ],
        mark: { type: "line", interpolate: "step-after" },
        encoding: {
          x: { field: "ms", type: "quantitative", title: "latency (ms, log scale)", scale: { type: "log" } },
          y: { field: "fraction", type: "quantitative", title: "share of requests done", axis: { format: "%" } },
          color: { field: "client", type: "nominal" }
        }
      } as any)
    ].join(""),

  ratelimit: async (f) => {
    const series = Object.entries(f.utilizationPerMinute as Record<string, Array<number>>).flatMap(([key, minutes]) => {
      const [scenario, variant] = key.split("/")
      return minutes.map((percent, minute) => ({ scenario, variant, minute, percent }))
    })
    const charts = []
    for (const scenario of ["openai", "anthropic"]) {
      charts.push(
        await chart(`ratelimit-${scenario}`, `Utilization per minute, ${scenario}`, {
          data: { values: series.filter((s) => s.scenario === scenario) },
          mark: { type: "line", point: false },
          encoding: {
            x: { field: "minute", type: "quantitative", title: "minute of the drain" },
            y: { field: "percent", type: "quantitative", title: `% of the tightest ${scenario} budget used` },
            color: { field: "variant", type: "nominal" },
            strokeDash: { field: "variant", type: "nominal" }
          }
        } as any)
      )
    }
    return [
      "## Rate limiting\n",
      "Requests of mixed sizes submitted at once to the simulator's in-process face (virtual time, 2 s latency), ",
      "for an OpenAI-style quota (60 RPM, 90,000 TPM) and an Anthropic-style one (50 RPM, 40,000 ITPM, 8,000 OTPM): ",
      "this limiter at the quota (`configured`), 2x too high and learning (`adaptive`), a naive polling limiter ",
      "(`naive`) and no limiter (`no-limiter`, retries only). Utilization is over the whole drain; the ",
      "buckets start full, so the first minute may exceed 100 %.\n\n",
      table(f.variants),
      "\n",
      ...charts
    ].join("")
  },

  "limiter-scale": async (f) =>
    [
      "## Limiter scale\n",
      "Requests queued at once in the limiter as users configure it (`maxConcurrent` 5, a budget of 100 requests a ",
      "minute, in virtual time), each a fiber calling `withAdmission` as the engine does: memory per waiter (its fiber ",
      "included) and admissions per second of CPU while the queue drains. The `floor` columns are the same fibers in ",
      "the least a limiter can be (an array of `Effect.async` resumes, one timer), in the same run: what the fibers ",
      "themselves cost; `limiterCpuUsPerAdmission` is the difference. Then, on the real clock, the CPU used while they ",
      `wait. Goals: ${JSON.stringify(f.goals)}; admissions per CPU-second at 100,000 over those at 1,000: `,
      `${f.rateAt100kOver1k}; over the floor's at 100,000: ${f.rateOverFloorAt100k}; a waiter of \`admit\` in a `,
      `scope (\`Effect.scoped\`): ${f.scopedAdmitBytesPerWaiterAt10k} bytes.\n\n`,
      table(f.runs),
      "\n",
      table(f.idle),
      "\n"
    ].join(""),

  "model-flood": async (f) =>
    [
      "## A new model name per request\n",
      "The engine over the simulator's in-process face with the in-memory limiter (`maxConcurrent` 5), every generation ",
      "pinning a model nobody serves (a 404: `ModelNotFoundError`), as a client may when any model may be pinned: the heap ",
      "kept after a full collection. The limiter's keys, the circuits, the metric series and the caches are bounded, ",
      `so a name past 30,000 adds ${f.bytesPerNameFrom30kTo60k} bytes; 10,000 generations on one model keep `,
      `${f.oneModelHeapKeptMbAt10k} MB. Before the bounds, each name kept about 16 KB for good.\n\n`,
      table(f.rows),
      "\n"
    ].join(""),

  caching: async (f) =>
    [
      "## Prompt caching\n",
      `${f.generations} generations over ${f.projects} projects on the simulator's in-process face (virtual time, `,
      "2 s latency), with the providers' prompt caches off and on. Input cost with the caches over without: ",
      `${f.inputCostRatio} (OpenAI ${f.inputCostRatioByProvider.openai}, Anthropic ${f.inputCostRatioByProvider.anthropic}; `,
      `goal ${f.goals.inputCostRatio}). Generations a minute under an Anthropic quota bound by input tokens `,
      `(40,000 ITPM), cached over uncached: ${f.anthropicThroughputRatio} (goal ${f.goals.anthropicThroughputRatio}).\n\n`,
      table(f.rows),
      "\n",
      await chart("caching", "Input cost and throughput, caches off and on", {
        data: { values: f.rows },
        hconcat: [
          barsByProvider("caches", "inputCostUsd", "input cost (USD)"),
          barsByProvider("caches", "generationsPerMinute", "generations / minute")
        ]
      } as any)
    ].join(""),

  streaming: async (f) =>
    [
      "## Streaming\n",
      "What a streamed generation costs the process that reads it, on the same stream from the simulator (its own ",
      "process, loopback): CPU microseconds per delta (user + system, GC included) for the engine's ",
      "`generateStream`, the `@effect/ai` client alone making the engine's call, the official SDK sending the body ",
      "that client sends, and `fetch` with a plain line splitter; the `paced*` columns measure engine, client and ",
      "SDK on a paced stream (each event written on its own, a millisecond apart, ten streams at once), the shape ",
      "of a provider's stream; then the heap a held stream keeps ",
      `(${f.heldStreams} streams stalled midway, after a full GC), engine against the client alone. `,
      `Goals: ${f.goals.engineOverSdk}; ${f.goals.engineOverClientHeld}.\n\n`,
      table(f.rows),
      "\n",
      await chart("streaming", "CPU microseconds per streamed delta", {
        data: {
          values: f.rows.flatMap((r: any) => [
            { provider: r.provider, path: "engine", us: r.engineCpuUsPerDelta },
            { provider: r.provider, path: "@effect/ai client", us: r.effectAiCpuUsPerDelta },
            { provider: r.provider, path: "official SDK", us: r.sdkCpuUsPerDelta },
            { provider: r.provider, path: "fetch + line splitter", us: r.fetchCpuUsPerDelta }
          ])
        },
        ...barsByProvider("path", "us", "µs CPU per delta")
      } as any)
    ].join(""),

  routing: async (f) => {
    const rows = [
      {
        figure: "twoDeploymentThroughputRatio",
        value: f.twoDeploymentThroughputRatio,
        goal: `>= ${f.goals.twoDeploymentThroughputRatio}`
      },
      { figure: "providerRateLimits", value: f.providerRateLimits, goal: "0" },
      { figure: "oneFailingContentRate", value: f.oneFailingContentRate, goal: `>= ${f.goals.oneFailingContentRate}` },
      { figure: "interactiveP95WaitMs", value: f.interactiveP95WaitMs, goal: `<= ${f.goals.interactiveP95WaitMs}` },
      { figure: "batchUtilization", value: f.batchUtilization, goal: `>= ${f.goals.batchUtilization}` }
    ]
    return [
      "## Routing across deployments\n",
      `${f.batchSize} generations of gpt-4.1 at once on the simulator's in-process face (virtual time, 2 s a call), `,
      "each deployment a simulator with a quota of 60 requests and 90,000 tokens a minute: over one deployment ",
      `(${f.oneDeploymentSeconds} s) and two (${f.twoDeploymentSeconds} s); over two of which one answers 500 to `,
      `everything (${f.oneFailingRequests} calls); and 20 interactive generations arriving during the batch.\n\n`,
      table(rows),
      "\n",
      await chart("routing", "Time for the batch, one deployment and two", {
        data: {
          values: [
            { deployments: "one", seconds: f.oneDeploymentSeconds },
            { deployments: "two", seconds: f.twoDeploymentSeconds }
          ]
        },
        mark: "bar",
        encoding: {
          x: { field: "deployments", type: "nominal", title: null, axis: { labelAngle: 0 } },
          y: { field: "seconds", type: "quantitative", title: "virtual seconds" }
        }
      } as any)
    ].join("")
  },

  fleet: async (f) => {
    const scenarios = ["right", "tooHigh", "shared", "sharedTooHigh", "redisOutage"].filter((name) => f[name])
    const rows = scenarios.map((name) => {
      const s = f[name]
      return {
        scenario: name,
        processes: s.processes,
        configured: s.configured,
        requests: s.requests,
        binding: s.binding,
        elapsedS: s.elapsedSeconds,
        quotaS: s.quotaSeconds,
        elapsedOverQuota: s.elapsedOverQuota,
        refusedAtGateway: s.refusedAtGateway,
        refusedShare: `${(100 * s.refusedShare).toFixed(1)} %`,
        refusedInOutput: s.refusedInOutput,
        errors: s.errors,
        storeOutagesLogged: s.storeOutagesLogged,
        linesWhole: s.linesWhole,
        maxGenerationS: s.maxGenerationSeconds
      }
    })
    const metrics = f.metrics
    return [
      "## Fleet (real time)\n\n",
      `The gateway simulator over loopback: ${f.gateway}. The CLI's \`batch\` in child processes (32 at a time, `,
      "the limiter's defaults otherwise); three processes share the key through a `redis-server` of the run's own. ",
      "`quotaS` is the least time the quota allows for what was served, from full buckets (the binding limit's ",
      "`(used - capacity) / rate`); `elapsedS` runs from the first batch's start to the last one's end, the ",
      "processes' start-up left out. `refusedAtGateway` counts the 429s the gateway sent, `refusedInOutput` the ",
      "rate-limit errors the results report. Goals: `tooHigh` within 1.5x; `shared` at most 2 % refused and within ",
      "1.25x; `redisOutage` (Redis killed halfway, started 10 s later) finishes with every line whole and no ",
      "generation past its deadline (120 s there). `storeOutagesLogged` counts the limiter's warnings that Redis did ",
      "not answer within its store timeout (1 s): its buckets then answer locally at 1/3 of each limit.\n\n",
      table(rows),
      "\n",
      f.redisOutage?.outage === undefined
        ? ""
        : `Redis outage: killed at ${f.redisOutage.outage.killedAtSeconds} s, started again at ${f.redisOutage.outage.restartedAtSeconds} s; ` +
          `${f.redisOutage.storeOutagesLogged} outage warnings logged; errors ${
            JSON.stringify(f.redisOutage.errorTypes)
          }.\n\n`,
      metrics === undefined
        ? ""
        : `\`GET /metrics\` on the example server after ${metrics.generations} generations: ${metrics.metricsStatus}, ` +
          `\`${metrics.contentType}\`, \`plot_engine_generations_total\` sums to ${metrics.generationsTotal}.\n`
    ].join("")
  },

  context: async (f) =>
    [
      "## Context fitting\n",
      "A 200,000-token project fitted into a 16,000-token budget with the real tokenizer.\n\n",
      table([Object.fromEntries(Object.entries(f).filter(([k]) => k !== "benchmark" && k !== "machine"))]),
      "\n"
    ].join("")
}

/** Writes `bench/results/report.md` (and its charts) from whatever figures are there. */
export const write = async (): Promise<string> => {
  const parts: Array<string> = []
  let machine: Figures | undefined
  for (const [name, section] of Object.entries(sections)) {
    const figures = load(name)
    if (figures === undefined) continue
    machine ??= figures.machine
    parts.push(await section(figures))
  }
  const header = [
    "# plot-engine performance report\n",
    machine === undefined ? "" : `Machine: ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}. `,
    `Written ${new Date().toISOString()} by \`npm run bench\`.\n\n`,
    "Absolute times vary between runs and machines (and with what else the machine is doing); the ratios ",
    "between paths measured in the same run are the figures to compare.\n\n"
  ].join("")
  const file = new URL("report.md", results)
  writeFileSync(file, header + parts.join("\n"))
  return file.pathname
}
