/**
 * Batch generation for the CLI: many requests through one engine (and its rate limiter), one result or typed
 * error per output line as each finishes, a summary, and an HTML report whose charts Chart.js draws.
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import { appendFileSync, existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import type * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import type * as PlotGeneration from "../PlotGeneration.js"

/**
 * How one request of a batch ended.
 *
 * @since 0.1.0
 */
export type Outcome =
  | { readonly index: number; readonly finishedAt: number; readonly result: Domain.PlotResult }
  | { readonly index: number; readonly finishedAt: number; readonly error: Errors.GenerationError }

/**
 * Reads a JSONL file of requests; a line that is not JSON is named by its number (the error's field is the flag,
 * `--requests`).
 *
 * @since 0.1.0
 */
export const readRequests = (
  file: string
): Effect.Effect<ReadonlyArray<Domain.PlotRequestInput>, Errors.RequestValidationError> =>
  Effect.try({
    try: () => readFileSync(file, "utf8"),
    catch: () => new Errors.RequestValidationError({ field: "--requests", reason: `cannot read ${file}` })
  }).pipe(
    Effect.flatMap((text) =>
      Effect.forEach(
        text.split("\n").map((line, i) => [line.trim(), i + 1] as const).filter(([line]) => line !== ""),
        ([line, number]) =>
          Effect.try({
            try: () => JSON.parse(line) as Domain.PlotRequestInput,
            catch: () =>
              new Errors.RequestValidationError({
                field: "--requests",
                reason: `line ${number} of ${file} is not JSON`
              })
          })
      )
    )
  )

/**
 * The indexes an earlier run wrote to `out`, for `--resume` to skip (none when the file does not exist yet). A
 * last line cut short (the process killed as it wrote) is dropped from the file, so that what is appended starts
 * on a line of its own; a line that is not an outcome of one of these requests is refused, named by `--out`.
 *
 * @since 0.1.0
 */
export const finishedIndexes = Effect.fnUntraced(function*(out: string, requests: number) {
  const cannotRead = () => new Errors.RequestValidationError({ field: "--out", reason: `cannot read ${out}` })
  const text = yield* Effect.try({ try: () => (existsSync(out) ? readFileSync(out, "utf8") : ""), catch: cannotRead })
  const whole = text.slice(0, text.lastIndexOf("\n") + 1)
  if (whole.length < text.length) {
    yield* Effect.try({ try: () => truncateSync(out, Buffer.byteLength(whole)), catch: cannotRead })
  }
  const indexes = new Set<number>()
  for (const [i, line] of whole.split("\n").entries()) {
    if (line.trim() === "") continue
    const index = indexOfLine(line)
    if (index === undefined || index >= requests) {
      return yield* new Errors.RequestValidationError({
        field: "--out",
        reason: `line ${i + 1} of ${out} is not the outcome of one of these ${requests} requests`
      })
    }
    indexes.add(index)
  }
  return indexes as ReadonlySet<number>
})

const indexOfLine = (line: string): number | undefined => {
  try {
    const index: unknown = JSON.parse(line)?.index
    return typeof index === "number" && Number.isInteger(index) && index >= 0 ? index : undefined
  } catch {
    return undefined
  }
}

/**
 * The summary figures of a batch: `requests` in the file, of which `skipped` were finished by an earlier run
 * (`--resume`), `succeeded`, `templates` and `failed` in this one, and `unfinished` when it was interrupted. The
 * other figures are this run's.
 *
 * @since 0.1.0
 */
export interface Summary {
  readonly requests: number
  readonly skipped: number
  readonly unfinished: number
  readonly succeeded: number
  readonly templates: number
  readonly failed: number
  readonly inputTokens: number
  readonly outputTokens: number
  readonly costUsd: number
  readonly retries: number
  readonly latencyP50Ms: number
  readonly latencyP95Ms: number
  readonly elapsedMs: number
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/**
 * Sums up the outcomes of a batch.
 *
 * @since 0.1.0
 */
export const summarize = (
  outcomes: ReadonlyArray<Outcome>,
  counts: { readonly requests: number; readonly skipped: number; readonly elapsedMs: number }
): Summary => {
  const results = outcomes.flatMap((o) => ("result" in o ? [o.result] : []))
  return {
    requests: counts.requests,
    skipped: counts.skipped,
    unfinished: counts.requests - counts.skipped - outcomes.length,
    succeeded: results.filter((r) => !r.isTemplate).length,
    templates: results.filter((r) => r.isTemplate).length,
    failed: outcomes.length - results.length,
    inputTokens: results.reduce((sum, r) => sum + r.usage.inputTokens, 0),
    outputTokens: results.reduce((sum, r) => sum + r.usage.outputTokens, 0),
    costUsd: results.reduce((sum, r) => sum + (r.estimatedCostUsd ?? 0), 0),
    retries: results.reduce((sum, r) => sum + r.retryCount, 0),
    latencyP50Ms: percentile(results.map((r) => r.durationMs), 50),
    latencyP95Ms: percentile(results.map((r) => r.durationMs), 95),
    elapsedMs: counts.elapsedMs
  }
}

/**
 * The summary as lines for a person.
 *
 * @since 0.1.0
 */
export const describeSummary = (s: Summary): string =>
  [
    `Requests:  ${s.requests} (${
      [
        ...(s.skipped > 0 ? [`${s.skipped} skipped as already done`] : []),
        `${s.succeeded} succeeded`,
        `${s.templates} templates`,
        `${s.failed} failed`,
        ...(s.unfinished > 0 ? [`${s.unfinished} unfinished`] : [])
      ].join(", ")
    })`,
    `Tokens:    ${s.inputTokens} in, ${s.outputTokens} out`,
    `Cost:      $${s.costUsd.toFixed(6)}`,
    `Retries:   ${s.retries}`,
    `Latency:   p50 ${(s.latencyP50Ms / 1000).toFixed(2)} s, p95 ${(s.latencyP95Ms / 1000).toFixed(2)} s`,
    `Elapsed:   ${(s.elapsedMs / 1000).toFixed(1)} s`
  ].join("\n")

/** One output line: the result, or the typed error with what a person should read. */
const outputLine = (outcome: Outcome) =>
  JSON.stringify(
    "result" in outcome
      ? { index: outcome.index, result: outcome.result }
      : {
        index: outcome.index,
        error: { ...outcome.error, _tag: outcome.error._tag, message: outcome.error.message },
        errorType: Errors.errorType(outcome.error),
        userMessage: Errors.userMessage(outcome.error)
      }
  ) + "\n"

/**
 * Runs a batch: requests `concurrency` at a time, each outcome appended to `out` as it finishes (so what
 * finished is kept if the batch is interrupted), `onProgress` told after each (of this run's). With
 * `alreadyFinished` (see `finishedIndexes`) those requests are skipped and `out` is appended to, not emptied.
 * Interrupted, it tells `onInterrupt` what finished before it stops.
 *
 * @since 0.1.0
 */
export const run = Effect.fnUntraced(function*(
  engine: PlotGeneration.Service,
  requests: ReadonlyArray<Domain.PlotRequestInput>,
  options: {
    readonly concurrency: number
    readonly out?: string | undefined
    readonly alreadyFinished?: ReadonlySet<number> | undefined
    readonly onProgress: (done: ReadonlyArray<Outcome>) => Effect.Effect<void>
    readonly onInterrupt?: ((outcomes: ReadonlyArray<Outcome>, summary: Summary) => Effect.Effect<void>) | undefined
  }
) {
  const { alreadyFinished, out } = options
  if (out !== undefined) {
    yield* Effect.try({
      try: () => {
        mkdirSync(path.dirname(out), { recursive: true })
        if (alreadyFinished === undefined) writeFileSync(out, "")
      },
      catch: () => new Errors.RequestValidationError({ field: "--out", reason: `cannot write ${out}` })
    })
  }
  const startedAt = yield* Clock.currentTimeMillis
  const outcomes: Array<Outcome> = []
  const summarizeNow = Effect.map(Clock.currentTimeMillis, (now) =>
    summarize(outcomes, {
      requests: requests.length,
      skipped: alreadyFinished?.size ?? 0,
      elapsedMs: now - startedAt
    }))
  const toRun = requests.flatMap((request, index) => alreadyFinished?.has(index) ? [] : [{ request, index }])
  yield* Stream.fromIterable(toRun).pipe(
    Stream.mapEffect(({ index, request }) =>
      // Background work: behind any interactive request sharing the limiter.
      engine.generate(request, { lane: "batch" }).pipe(
        Effect.either,
        Effect.flatMap((either) =>
          Effect.map(Clock.currentTimeMillis, (now): Outcome =>
            either._tag === "Right"
              ? { index, finishedAt: now - startedAt, result: either.right }
              : { index, finishedAt: now - startedAt, error: either.left })
        ),
        Effect.tap((outcome) =>
          Effect.suspend(() => {
            outcomes.push(outcome)
            if (out !== undefined) appendFileSync(out, outputLine(outcome))
            return options.onProgress(outcomes)
          })
        )
      ), { concurrency: options.concurrency, unordered: true }),
    Stream.runDrain,
    Effect.onInterrupt(() =>
      options.onInterrupt === undefined
        ? Effect.void
        : Effect.flatMap(summarizeNow, (summary) => options.onInterrupt!(outcomes, summary))
    )
  )
  return { outcomes, summary: yield* summarizeNow }
})

// =============================================================================
// Report
// =============================================================================

/** Chart.js's browser build, read from the installed package (its exports map does not name the file). */
const chartJs = () =>
  readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve("chart.js")), "chart.umd.min.js"), "utf8")

const escapeHtml = (text: string) =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/**
 * Writes `index.html` into `directory`: the summary, requests completed over time against what the
 * requests-per-minute quota allows, and the latency distribution, drawn by Chart.js (inlined, so the report
 * opens offline).
 *
 * @since 0.1.0
 */
export const writeReport = (
  directory: string,
  outcomes: ReadonlyArray<Outcome>,
  summary: Summary,
  requestsPerMinute: number
): string => {
  mkdirSync(directory, { recursive: true })
  // Completions over time, cumulative, beside what the quota allows by then: a full bucket of a minute's
  // requests at the start, then the per-minute rate.
  const points = 40
  const step = Math.max(1, summary.elapsedMs) / points
  const times = Array.from({ length: points + 1 }, (_, i) => i * step)
  const throughput = times.map((t) => outcomes.filter((o) => o.finishedAt <= t).length)
  const allowance = times.map((t) => Math.round(requestsPerMinute + (requestsPerMinute * t) / 60_000))
  const latencies = outcomes.flatMap((o) => ("result" in o ? [o.result.durationMs / 1000] : []))
  const width = Math.max(0.1, Math.ceil((Math.max(0, ...latencies) / 10) * 10) / 10)
  const histogram = Array.from(
    { length: 10 },
    (_, i) =>
      latencies.filter((l) => l >= i * width && (l < (i + 1) * width || (i === 9 && l === (i + 1) * width))).length
  )
  const data = {
    throughputLabels: times.map((t) => `${(t / 1000).toFixed(1)} s`),
    throughput,
    quota: allowance,
    latencyLabels: histogram.map((_, i) => `${(i * width).toFixed(1)}-${((i + 1) * width).toFixed(1)} s`),
    histogram
  }
  const html = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>plot-engine batch report</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:960px}pre{background:#f4f4f4;padding:1rem}canvas{margin:1rem 0}</style>
</head>
<body>
<h1>plot-engine batch report</h1>
<pre>${escapeHtml(describeSummary(summary))}</pre>
<h2>Requests completed over time, against what the requests-per-minute quota allows</h2>
<canvas id="throughput" width="900" height="320"></canvas>
<h2>Latency distribution</h2>
<canvas id="latency" width="900" height="320"></canvas>
<script>${chartJs()}</script>
<script>
const data = ${JSON.stringify(data).replace(/</g, "\\u003c")};
new Chart(document.getElementById("throughput"), { type: "line", data: { labels: data.throughputLabels, datasets: [
  { label: "completed (cumulative)", data: data.throughput, borderColor: "#2563eb", pointRadius: 0, stepped: true },
  { label: "allowed by the quota (bucket + rate)", data: data.quota, borderColor: "#dc2626", borderDash: [6, 4], pointRadius: 0 }
] }, options: { animation: false, scales: { y: { beginAtZero: true } } } });
new Chart(document.getElementById("latency"), { type: "bar", data: { labels: data.latencyLabels, datasets: [
  { label: "generations", data: data.histogram, backgroundColor: "#16a34a" }
] }, options: { animation: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
</script>
</body>
</html>
`
  const file = path.join(directory, "index.html")
  writeFileSync(file, html)
  return file
}
