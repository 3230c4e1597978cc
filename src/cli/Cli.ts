/**
 * The `plot-engine` command line: `generate` runs the whole pipeline for a project file, `batch` a file of
 * requests, `simulate` serves the gateway simulator. With no provider configured, `generate` and `batch` start
 * the simulator in-process and say so. The engine is `PlotEngine`'s, as the example server's is.
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as ConfigError from "effect/ConfigError"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as path from "node:path"
import * as Alerts from "../Alerts.js"
import type * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as PlotEngine from "../PlotEngine.js"
import * as PlotGeneration from "../PlotGeneration.js"
import * as ProjectContextStore from "../ProjectContextStore.js"
import * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import * as Faults from "../simulator/Faults.js"
import * as GatewaySimulator from "../simulator/GatewaySimulator.js"
import * as Batch from "./Batch.js"

// =============================================================================
// Output
// =============================================================================

const describeEvent = (event: Domain.GenerationEvent): string | undefined => {
  switch (event._tag) {
    case "Progress":
      return `[${String(event.progress).padStart(3)}%] ${event.message}`
    case "ModelSelected":
      return `       model: ${event.provider}/${event.model} (${event.reasoning}), estimated cost ${
        formatCost(event.estimatedCostUsd)
      }`
    case "Warning":
      return `       warning: ${event.message}`
    case "Retrying":
      return `       ${event.message} (${event.errorType} from ${event.provider}/${event.model}; attempt ${event.attempt} in ${
        (event.delayMs / 1000).toFixed(1)
      } s)`
    case "Fallback":
      return `       falling back from ${event.from} to ${event.to} (${event.reason})`
    case "CircuitChanged":
      return `       circuit ${event.state.replace("_", "-")} for ${event.provider}/${event.model}`
    case "ActStarted":
      return `       act ${event.act}: ${event.title}`
    case "OutlineHeading":
    case "BeatWritten":
    case "TextDelta":
    case "Completed":
      return undefined
  }
}

const plainProgress = (event: Domain.GenerationEvent, log: (line: string) => Effect.Effect<void>) => {
  const line = describeEvent(event)
  return line === undefined ? Effect.void : log(line)
}

/**
 * A progress line that rewrites itself on a terminal: stage, percent, the outline's acts and beats so far, and
 * retries; events that matter beyond the moment (model, warnings, acts, retries, fallbacks) are kept above it as
 * lines of their own.
 *
 * @since 0.1.0
 */
export const liveProgress = () => {
  let stage = "starting"
  let percent = 0
  let beats = 0
  let retries = 0
  const render = () =>
    Effect.sync(() => {
      const text = beats > 0 ? `, ${beats} ${beats === 1 ? "beat" : "beats"} written` : ""
      const retried = retries > 0 ? `, ${retries} ${retries === 1 ? "retry" : "retries"}` : ""
      process.stdout.write(`\r\x1b[2K[${String(percent).padStart(3)}%] ${stage}${text}${retried}`)
    })
  const above = (line: string) => Effect.sync(() => process.stdout.write(`\r\x1b[2K${line}\n`))
  return (event: Domain.GenerationEvent): Effect.Effect<void> => {
    switch (event._tag) {
      case "Progress":
        stage = event.message
        percent = event.progress
        return render()
      case "BeatWritten":
        beats++
        return render()
      case "Retrying":
        retries++
        beats = 0
        return Effect.zipRight(above(describeEvent(event)!), render())
      case "Completed":
        return Effect.sync(() => process.stdout.write("\r\x1b[2K"))
      default: {
        const line = describeEvent(event)
        return line === undefined ? render() : Effect.zipRight(above(line), render())
      }
    }
  }
}

const formatCost = (
  cost: number | null
) => (cost === null ? "unknown (no price for this model)" : `$${cost.toFixed(6)}`)

/**
 * The summary printed after a plot.
 *
 * @since 0.1.0
 */
export const summary = (result: Domain.PlotResult): string =>
  [
    "",
    "---",
    `Provider:  ${result.provider}`,
    `Model:     ${result.model} (${result.reasoning})`,
    `Tokens:    ${result.usage.inputTokens} in, ${result.usage.outputTokens} out`,
    `Cost:      ${formatCost(result.estimatedCostUsd)}${
      result.preCallEstimateUsd === null ? "" : ` (estimated ${formatCost(result.preCallEstimateUsd)} before the call)`
    }`,
    `Duration:  ${(result.durationMs / 1000).toFixed(2)} s`,
    `Retries:   ${result.retryCount}`,
    `Words:     ${result.wordCount}`,
    ...(result.warnings.length === 0 ? [] : ["Warnings:", ...result.warnings.map((w) => `  - ${w}`)])
  ].join("\n")

// =============================================================================
// generate
// =============================================================================

const projectOption = Options.file("project", { exists: "yes" }).pipe(
  Options.withDescription("The project file (JSON: characters, plotThreads, locations, worldBuilding, previousContent)")
)
const promptOption = Options.text("prompt").pipe(Options.withDescription("What to generate"))
const genreOption = Options.text("genre").pipe(Options.optional)
const wordsOption = Options.integer("words").pipe(Options.withDescription("Target word count"), Options.optional)
const kindOption = Options.choice("kind", ["outline", "scene_beats", "suggestions"]).pipe(Options.optional)
const providerOption = Options.choice("provider", ["openai", "anthropic"]).pipe(Options.optional)
const modelOption = Options.text("model").pipe(
  Options.withDescription("Pin a model id (with --provider)"),
  Options.optional
)
const jsonOption = Options.boolean("json").pipe(
  Options.withDescription("Print only the PlotResult as JSON on stdout (progress goes to stderr)")
)
const noFallbackOption = Options.boolean("no-fallback").pipe(
  Options.withDescription("Fail instead of falling back to a template")
)

const generate = Command.make(
  "generate",
  {
    project: projectOption,
    prompt: promptOption,
    genre: genreOption,
    words: wordsOption,
    kind: kindOption,
    provider: providerOption,
    model: modelOption,
    json: jsonOption,
    noFallback: noFallbackOption
  },
  (args) =>
    Effect.gen(function*() {
      // With --json, stdout carries only the result: everything for people goes to stderr.
      const log = (line: string) => (args.json ? Console.error(line) : Console.log(line))
      const gateway = yield* PlotEngine.resolveGateway(log)
      // On a terminal (and not --json), one progress line that updates in place; plain lines otherwise.
      const live = !args.json && process.stdout.isTTY ? liveProgress() : undefined
      const request: Domain.PlotRequestInput = {
        projectId: ProjectContextStore.projectIdOfFile(path.basename(args.project)),
        userPrompt: args.prompt,
        ...Option.match(args.genre, { onNone: () => ({}), onSome: (genre) => ({ genre }) }),
        ...Option.match(args.words, { onNone: () => ({}), onSome: (targetWordCount) => ({ targetWordCount }) }),
        ...Option.match(args.kind, { onNone: () => ({}), onSome: (kind) => ({ kind }) }),
        ...Option.match(args.provider, { onNone: () => ({}), onSome: (provider) => ({ provider }) }),
        ...Option.match(args.model, { onNone: () => ({}), onSome: (model) => ({ model }) })
      }
      // One generation has no window for the alerts to watch.
      const layer = PlotEngine.layer({
        gateway,
        store: ProjectContextStore.layerFile(args.project),
        alerts: Alerts.layerDisabled
      })
      const outcome = yield* Effect.flatMap(PlotGeneration.PlotGeneration, (engine) =>
        engine.generateStream(request, { useFallback: !args.noFallback }).pipe(
          Stream.tap((event) => (live === undefined ? plainProgress(event, log) : live(event))),
          Stream.runLast
        )).pipe(
          Effect.provide(layer),
          Effect.mapError((error) =>
            ConfigError.isConfigError(error)
              ? new Errors.RequestValidationError({ field: "configuration", reason: String(error) })
              : error
          ),
          Effect.either
        )
      if (outcome._tag === "Left") {
        const error = outcome.left
        yield* Console.error(Errors.userMessage(error))
        yield* Console.error(`(${Errors.errorType(error)}) ${error.message}`)
        process.exitCode = 1
        return
      }
      const last = Option.getOrUndefined(outcome.right)
      if (last?._tag !== "Completed") {
        return yield* Effect.dieMessage("generation ended without a result")
      }
      const result = last.result
      if (args.json) {
        yield* Console.log(JSON.stringify(result, null, 2))
      } else {
        yield* Console.log(`\n${result.content}`)
        yield* Console.log(summary(result))
      }
    }).pipe(Effect.scoped)
).pipe(Command.withDescription("Generate plot content for a project"))

// =============================================================================
// simulate
// =============================================================================

/**
 * Parses fault rates written as `rate_limit=0.1,server_error=0.05`.
 *
 * @since 0.1.0
 */
export const parseFaultRates = (text: string): Either.Either<Partial<Record<Faults.FaultKind, number>>, string> => {
  if (text.trim() === "chaos") return Either.right({ ...Faults.chaosMix })
  const rates: Partial<Record<Faults.FaultKind, number>> = {}
  for (const part of text.split(",").map((p) => p.trim()).filter((p) => p !== "")) {
    const [kind, value] = part.split("=") as [string, string | undefined]
    const rate = Number(value)
    if (!(Faults.faultKinds as ReadonlyArray<string>).includes(kind)) {
      return Either.left(`unknown fault "${kind}"; known: ${Faults.faultKinds.join(", ")}`)
    }
    if (value === undefined || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      return Either.left(`the rate of ${kind} must be between 0 and 1`)
    }
    rates[kind as Faults.FaultKind] = rate
  }
  const total = Object.values(rates).reduce((sum, rate) => sum + rate, 0)
  return total > 1 ? Either.left(`the fault rates add up to ${total}, more than 1`) : Either.right(rates)
}

const simulate = Command.make(
  "simulate",
  {
    port: Options.integer("port").pipe(Options.withDefault(8787)),
    seed: Options.integer("seed").pipe(Options.withDefault(1)),
    faults: Options.text("faults").pipe(
      Options.withDescription(
        "Random fault rates, such as rate_limit=0.1,server_error=0.05,reset=0.02, or chaos for the soak's mix"
      ),
      Options.withDefault("")
    ),
    latencyMs: Options.integer("latency-ms").pipe(
      Options.withDescription("Latency added to every answer"),
      Options.withDefault(0)
    )
  },
  ({ faults, latencyMs, port, seed }) =>
    Effect.gen(function*() {
      const rates = yield* Either.match(parseFaultRates(faults), {
        onLeft: (reason) => Effect.fail(new Errors.RequestValidationError({ field: "--faults", reason })),
        onRight: Effect.succeed
      })
      const context = yield* Layer.build(GatewaySimulator.layer({ port, seed, faults: { rates, latencyMs } }))
      const simulator = Context.get(context, GatewaySimulator.GatewaySimulator)
      yield* Console.log(`Gateway simulator listening on ${simulator.url}`)
      yield* Console.log(`  OPENAI_BASE_URL=${simulator.openaiBaseUrl}`)
      yield* Console.log(`  ANTHROPIC_BASE_URL=${simulator.anthropicBaseUrl}`)
      if (Object.keys(rates).length > 0) yield* Console.log(`  faults: ${faults}`)
      yield* Console.log("Any non-empty API key is accepted. Stop with Ctrl-C.")
      return yield* Effect.never
    }).pipe(
      Effect.scoped,
      Effect.catchTag("RequestValidationError", (error) =>
        Effect.zipRight(Console.error(error.message), Effect.sync(() => void (process.exitCode = 2))))
    )
).pipe(Command.withDescription("Serve the gateway simulator (OpenAI Responses and Anthropic Messages APIs)"))

// =============================================================================
// batch
// =============================================================================

const progressBar = (done: ReadonlyArray<Batch.Outcome>, total: number, elapsedMs: number) => {
  const width = 24
  const filled = Math.round((done.length / total) * width)
  const rate = done.length / Math.max(0.001, elapsedMs / 1000)
  const retries = done.reduce((sum, o) => sum + ("result" in o ? o.result.retryCount : 0), 0)
  const rateLimited = done.reduce((sum, o) => sum + ("result" in o ? o.result.metrics.rateLimitErrors : 0), 0)
  const failed = done.filter((o) => "error" in o).length
  const eta = rate > 0 ? Math.ceil((total - done.length) / rate) : 0
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done.length}/${total}  ${
    rate.toFixed(1)
  }/s  retries ${retries}  429s ${rateLimited}  failed ${failed}  ETA ${eta} s`
}

const batch = Command.make(
  "batch",
  {
    requests: Options.file("requests", { exists: "yes" }).pipe(
      Options.withDescription("A JSONL file: one PlotRequest per line")
    ),
    projects: Options.directory("projects", { exists: "yes" }).pipe(
      Options.withDescription("The directory of <projectId>.json project files"),
      Options.withDefault("examples/projects")
    ),
    concurrency: Options.integer("concurrency").pipe(Options.withDefault(4)),
    out: Options.file("out").pipe(
      Options.withDescription("Where to write one result or typed error per line"),
      Options.optional
    ),
    report: Options.directory("report").pipe(Options.withDescription("Where to write an HTML report"), Options.optional)
  },
  (args) =>
    Effect.gen(function*() {
      if (args.concurrency < 1) {
        return yield* new Errors.RequestValidationError({ field: "--concurrency", reason: "must be at least 1" })
      }
      const gateway = yield* PlotEngine.resolveGateway((line) => Console.error(line))
      const requests = yield* Batch.readRequests(args.requests)
      const quotas = yield* ProviderRateLimiter.quotasConfig
      const layer = PlotEngine.layer({
        gateway,
        store: ProjectContextStore.layerDirectory(args.projects),
        alerts: Alerts.layerDisabled
      })
      const startedAt = Date.now()
      const tty = process.stderr.isTTY === true
      const { outcomes, summary } = yield* Effect.flatMap(PlotGeneration.PlotGeneration, (engine) =>
        Batch.run(engine, requests, {
          concurrency: args.concurrency,
          out: Option.getOrUndefined(args.out),
          onProgress: (done) =>
            Effect.sync(() => {
              const line = progressBar(done, requests.length, Date.now() - startedAt)
              process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`)
            })
        })).pipe(Effect.provide(layer))
      if (tty) {
        process.stderr.write("\n")
      }
      yield* Console.log(Batch.describeSummary(summary))
      if (Option.isSome(args.report)) {
        const file = Batch.writeReport(args.report.value, outcomes, summary, quotas.openai.requestsPerMinute)
        yield* Console.log(`Report:    ${file}`)
      }
      if (summary.failed > 0) {
        process.exitCode = 1
      }
    }).pipe(
      Effect.scoped,
      Effect.catchAll((error) =>
        Effect.zipRight(
          Console.error(ConfigError.isConfigError(error) ? String(error) : error.message),
          Effect.sync(() =>
            void (process.exitCode = 2)
          )
        )
      )
    )
).pipe(Command.withDescription("Generate plots for every request of a JSONL file"))

/**
 * The root command.
 *
 * @since 0.1.0
 */
export const command = Command.make("plot-engine").pipe(Command.withSubcommands([generate, batch, simulate]))

/**
 * Runs the CLI on an argv.
 *
 * @since 0.1.0
 */
export const run = Command.run(command, { name: "plot-engine", version: "0.1.0" })
