/**
 * Runs the benchmarks: `npm run bench` runs them all (each in a process of its own) but `fleet`, `npm run bench --
 * NAME` one. Each writes its figures to `bench/results/NAME.json` and prints them; the report is written from those.
 * Absolute times vary between runs and machines.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { cpus, totalmem } from "node:os"
import { fileURLToPath } from "node:url"
import * as Caching from "./caching.js"
import * as Context from "./context.js"
import * as Faults from "./faults.js"
import * as Fleet from "./fleet.js"
import * as HttpPath from "./http-path.js"
import * as LimiterScale from "./limiter-scale.js"
import * as ModelFlood from "./model-flood.js"
import * as Pipeline from "./pipeline.js"
import * as RateLimit from "./ratelimit.js"
import * as Report from "./report.js"
import * as Routing from "./routing.js"
import * as Streaming from "./streaming.js"

const benchmarks: Record<string, () => Record<string, unknown> | Promise<Record<string, unknown>>> = {
  caching: Caching.run,
  context: Context.run,
  "http-path": HttpPath.run,
  faults: Faults.run,
  fleet: Fleet.run,
  "limiter-scale": LimiterScale.run,
  "model-flood": ModelFlood.run,
  pipeline: Pipeline.run,
  ratelimit: RateLimit.run,
  routing: Routing.run,
  streaming: Streaming.run
}

const selected = process.argv.slice(2)
const unknown = selected.filter((name) => !(name in benchmarks) && name !== "--no-report")
if (unknown.length > 0) {
  console.error(`Unknown benchmark(s): ${unknown.join(", ")}. Known: ${Object.keys(benchmarks).join(", ")}`)
  process.exit(2)
}

const results = new URL("./results/", import.meta.url)
mkdirSync(results, { recursive: true })
const machine = {
  cpus: `${cpus().length} x ${cpus()[0]?.model ?? "unknown"}`,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version
}
console.log(`Machine: ${machine.cpus}, ${machine.memoryGiB} GiB, Node ${machine.node}`)

/** Run only when named: `fleet` runs in real time for several minutes and needs `redis-server`. */
const onlyWhenNamed = new Set(["fleet"])

if (selected.length === 0) {
  // All of them, each in a process of its own: one benchmark's heap (100,000 waiters) must not slow the next.
  for (const name of Object.keys(benchmarks).filter((name) => !onlyWhenNamed.has(name))) {
    const child = spawnSync(process.execPath, [
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      name,
      "--no-report"
    ], { stdio: "inherit" })
    if (child.status !== 0) process.exit(child.status ?? 1)
  }
  console.log(`\nReport: ${await Report.write()}`)
  process.exit(0)
}

for (const name of selected.filter((name) => name !== "--no-report")) {
  const figures = await benchmarks[name]!()
  writeFileSync(
    new URL(`${name}.json`, results),
    JSON.stringify({ benchmark: name, machine, ...figures }, null, 2) + "\n"
  )
  console.log(`\n## ${name}\n`)
  for (const [key, value] of Object.entries(figures)) {
    // Series are for the charts; the JSON holds them.
    if (key === "utilizationPerMinute" || key === "latencies") continue
    if (Array.isArray(value) && typeof value[0] === "object") {
      // A list of rows: a table of its own.
      const columns = Object.keys(value[0] as object)
      console.log(`| ${columns.join(" | ")} |\n| ${columns.map(() => "---").join(" | ")} |`)
      for (const row of value as Array<Record<string, unknown>>) {
        console.log(`| ${columns.map((c) => String(row[c])).join(" | ")} |`)
      }
      continue
    }
    console.log(`- ${key}: ${typeof value === "number" ? Number(value.toFixed(3)) : JSON.stringify(value)}`)
  }
}

if (!selected.includes("--no-report")) console.log(`\nReport: ${await Report.write()}`)
