/**
 * The `plot-engine` command line: `generate` runs the whole pipeline for a project file, `batch` a file of
 * requests, `simulate` serves the gateway simulator. With no provider configured, `generate` and `batch` start
 * the simulator in-process and say so. The engine is `PlotEngine`'s, as the example server's is.
 *
 * Its contract with scripts: stdout carries only what a command produces (with `--json`, exactly one JSON
 * document); every log line, progress line, warning and error goes to stderr. Exit codes: 0 done, 1 a generation
 * (or a request of a batch) failed, 2 the command line, a file it names or the environment is wrong (nothing was
 * generated), 128 + the signal's number when interrupted (set by `main.ts`).
 *
 * @since 0.1.0
 */
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Cause from "effect/Cause"
import * as ConfigError from "effect/ConfigError"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as path from "node:path"
import * as Alerts from "../Alerts.js"
import * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as PlotEngine from "../PlotEngine.js"
import * as PlotGeneration from "../PlotGeneration.js"
import * as ProjectContextStore from "../ProjectContextStore.js"
import * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import * as Faults from "../simulator/Faults.js"
import * as GatewaySimulator from "../simulator/GatewaySimulator.js"
import * as Batch from "./Batch.js"

// =============================================================================
// Usage errors
// =============================================================================

/**
 * The command line, a file it names or the environment is wrong: one sentence on stderr, exit code 2.
 *
 * @since 0.1.0
 */
export class UsageError extends Schema.TaggedError<UsageError>("plot-engine/cli/UsageError")("UsageError", {
  message: Schema.String
}) {
  /** A bad value of a flag, named first, so that the sentence says which flag to fix. */
  static flag(flag: string, reason: string): UsageError {
    return new UsageError({ message: flagSentence(flag, reason) })
  }

  /** An environment variable the engine could not read. */
  static fromConfigError(error: ConfigError.ConfigError): UsageError {
    return new UsageError({ message: `The environment's configuration is invalid: ${String(error)}.` })
  }
}

const flagSentence = (flag: string, reason: string) => `${flag}: ${reason}.`

// @effect/cli's messages for a bad value ("'abc' is not a integer", "Path 'x' must exist") do not say which flag
// they are about: these options parse their text themselves and name it.
const badValue = (flag: string, reason: string) => ValidationError.invalidValue(HelpDoc.p(flagSentence(flag, reason)))

const integerOption = (name: string, range: { readonly min?: number; readonly max?: number } = {}) => {
  const { max, min } = range
  const bounds = min === undefined ? "" : max === undefined ? ` of at least ${min}` : ` from ${min} to ${max}`
  return Options.text(name).pipe(
    Options.withPseudoName("integer"),
    Options.withDescription(`A whole number${bounds}.`),
    Options.mapEffect((text) => {
      const value = Number(text)
      return /^\s*-?\d+\s*$/.test(text) && (min === undefined || value >= min) && (max === undefined || value <= max)
        ? Effect.succeed(value)
        : Effect.fail(badValue(`--${name}`, `must be a whole number${bounds}, not "${text}"`))
    })
  )
}

const choiceOption = <const Choices extends ReadonlyArray<string>>(name: string, choices: Choices) =>
  Options.text(name).pipe(
    Options.withPseudoName(choices.join(" | ")),
    Options.withDescription(`One of ${choices.join(", ")}.`),
    Options.mapEffect((text) =>
      choices.includes(text)
        ? Effect.succeed(text as Choices[number])
        : Effect.fail(badValue(`--${name}`, `must be one of ${choices.join(", ")}, not "${text}"`))
    )
  )

/** An option naming a file or directory that must exist; a default (`fallback`) is checked as a given value is. */
const existingPathOption = (name: string, type: "File" | "Directory", fallback?: string) => {
  const kind = type === "File" ? "file" : "directory"
  const text = Options.text(name).pipe(Options.withPseudoName(kind), Options.withDescription(`An existing ${kind}.`))
  return (fallback === undefined ? text : Options.withDefault(text, fallback)).pipe(
    Options.mapEffect((file) =>
      Effect.flatMap(FileSystem.FileSystem, (fs) => fs.stat(file)).pipe(
        Effect.matchEffect({
          onFailure: () => Effect.fail(badValue(`--${name}`, `there is no ${kind} ${file}`)),
          onSuccess: (info) =>
            info.type === type ? Effect.succeed(file) : Effect.fail(badValue(`--${name}`, `${file} is not a ${kind}`))
        })
      )
    )
  )
}

/** The request fields `generate` takes from its flags, for a refusal of the request to name the flag. */
const flagOfRequestField: Readonly<Record<string, string>> = {
  projectId: "--project",
  userPrompt: "--prompt",
  genre: "--genre",
  targetWordCount: "--words",
  kind: "--kind",
  provider: "--provider",
  model: "--model"
}

/**
 * A refusal of what the command line, the project file or the environment said (named by its flag when it has
 * one), as a usage error; other failures stay as they are.
 */
const usageErrorOf = (error: Errors.GenerationError, projectFile: string): UsageError | undefined => {
  switch (error._tag) {
    case "RequestValidationError": {
      const flag = flagOfRequestField[error.field]
      if (flag !== undefined) return UsageError.flag(flag, error.reason)
      return /^project\b/.test(error.field)
        ? UsageError.flag("--project", `${projectFile} is not a valid project: ${error.field} ${error.reason}`)
        : UsageError.flag(error.field, error.reason)
    }
    case "ProjectNotFoundError":
      return UsageError.flag("--project", `cannot read ${projectFile}`)
    default:
      return undefined
  }
}

// =============================================================================
// Logging
// =============================================================================

/** Whether text written to `stream` may be coloured: a terminal, and no `NO_COLOR` (set and not empty, per no-color.org). */
const showsColors = (stream: { readonly isTTY?: boolean }): boolean =>
  stream.isTTY === true && (process.env.NO_COLOR ?? "") === ""

/** The SGR escape sequences that colour and embolden text (ESC, `[`, parameters, `m`). */
const sgrSequences = new RegExp(`${String.fromCharCode(0x1b)}\\[[0-9;]*m`, "g")

const withoutColors = (args: ReadonlyArray<unknown>): Array<unknown> =>
  args.map((arg) => (typeof arg === "string" ? arg.replace(sgrSequences, "") : arg))

/**
 * Every log line on stderr, whatever its level, so that stdout carries only what a command produces.
 *
 * @since 0.1.0
 */
export const layerLogger: Layer.Layer<never> = Logger.replace(
  Logger.defaultLogger,
  Logger.prettyLogger({ stderr: true, colors: showsColors(process.stderr), mode: "tty" })
)

/**
 * `self` with what it writes through `Console` uncoloured on each stream that shows no colours: `@effect/cli` writes
 * its help and its messages in colour wherever they go, into a pipe or a file too.
 */
const colorsWhereShown = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const stdout = showsColors(process.stdout)
  const stderr = showsColors(process.stderr)
  if (stdout && stderr) return self
  return Effect.consoleWith((console) =>
    Effect.withConsole(self, {
      ...console,
      log: stdout ? console.log : (...args) => console.log(...withoutColors(args)),
      error: stderr ? console.error : (...args) => console.error(...withoutColors(args))
    })
  )
}

const logLevelNames = LogLevel.allLevels.map((level) => level._tag.toLowerCase())

/**
 * Takes `--log-level LEVEL` (or `--log-level=LEVEL`) out of an argv wherever it stands before `--`. @effect/cli
 * reads its built-in `--log-level` only before the subcommand (after it, the option is refused as unknown), and
 * each subcommand's help lists it: here it works at either place.
 *
 * @since 0.1.0
 */
export const extractLogLevel = (
  argv: ReadonlyArray<string>
): Either.Either<
  { readonly argv: ReadonlyArray<string>; readonly level: Option.Option<LogLevel.LogLevel> },
  UsageError
> => {
  // The first two are the runtime and the script, as Command.run expects them.
  const kept = argv.slice(0, 2)
  let name: string | undefined
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--") {
      kept.push(...argv.slice(i))
      break
    }
    if (arg === "--log-level") {
      name = argv[i + 1]
      if (name === undefined) {
        return Either.left(UsageError.flag("--log-level", `needs one of ${logLevelNames.join(", ")}`))
      }
      i++
    } else if (arg.startsWith("--log-level=")) {
      name = arg.slice("--log-level=".length)
    } else {
      kept.push(arg)
    }
  }
  if (name === undefined) return Either.right({ argv: kept, level: Option.none() })
  const level = LogLevel.allLevels.find((level) => level._tag.toLowerCase() === name)
  return level === undefined
    ? Either.left(UsageError.flag("--log-level", `must be one of ${logLevelNames.join(", ")}, not "${name}"`))
    : Either.right({ argv: kept, level: Option.some(level) })
}

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
    case "Queued":
      return `       waiting for the ${event.provider}/${event.model} quota: ${
        event.place === 1 ? "next" : `${event.place} in line`
      }, about ${Math.max(1, Math.ceil(event.expectedWaitMs / 1000))} s`
    case "Restarted":
      return `       ${event.message} (${event.errorType} from ${event.provider}/${event.model})`
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

const plainProgress = (event: Domain.GenerationEvent) => {
  const line = describeEvent(event)
  return line === undefined ? Effect.void : Console.error(line)
}

/**
 * A progress line on stderr that rewrites itself on a terminal: stage, percent, the outline's acts and beats so
 * far, and retries; events that matter beyond the moment (model, warnings, acts, retries, fallbacks) are kept
 * above it as lines of their own.
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
      process.stderr.write(`\r\x1b[2K[${String(percent).padStart(3)}%] ${stage}${text}${retried}`)
    })
  const above = (line: string) => Effect.sync(() => process.stderr.write(`\r\x1b[2K${line}\n`))
  return (event: Domain.GenerationEvent): Effect.Effect<void> => {
    switch (event._tag) {
      case "Progress":
        stage = event.message
        percent = event.progress
        return render()
      case "BeatWritten":
        beats++
        return render()
      case "Queued":
        // A wait that moves: told in place, not as a line per update.
        stage = describeEvent(event)!.trim()
        return render()
      case "Retrying":
        retries++
        beats = 0
        return Effect.zipRight(above(describeEvent(event)!), render())
      case "Restarted":
      case "Fallback":
        // The next attempt writes its own outline from the start.
        beats = 0
        return Effect.zipRight(above(describeEvent(event)!), render())
      case "Completed":
        return Effect.sync(() => process.stderr.write("\r\x1b[2K"))
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

const setExitCode = (code: number) => Effect.sync(() => void (process.exitCode = code))

/**
 * The gateway, and what it has to say (that plots come from the embedded simulator), said once the engine is up:
 * a configuration the engine refuses is then the only thing printed.
 */
const resolveGateway = Effect.gen(function*() {
  const said: Array<string> = []
  const gateway = yield* PlotEngine.resolveGateway((line) => Effect.sync(() => void said.push(line)))
  return { gateway, sayGateway: Effect.forEach(said, (line) => Console.error(line), { discard: true }) }
})

// =============================================================================
// generate
// =============================================================================

const jsonOption = Options.boolean("json").pipe(
  Options.withDescription("Print only the result as one JSON document on stdout")
)

const generate = Command.make(
  "generate",
  {
    project: existingPathOption("project", "File").pipe(
      Options.withDescription(
        "The project file (JSON: characters, plotThreads, locations, worldBuilding, previousContent)"
      )
    ),
    prompt: Options.text("prompt").pipe(Options.withDescription("What to generate")),
    genre: Options.text("genre").pipe(Options.optional),
    words: integerOption("words", { min: Domain.Limits.minWordCount, max: Domain.Limits.maxWordCount }).pipe(
      Options.withDescription("Target word count"),
      Options.optional
    ),
    kind: choiceOption("kind", ["outline", "scene_beats", "suggestions"]).pipe(Options.optional),
    provider: choiceOption("provider", ["openai", "anthropic"]).pipe(Options.optional),
    model: Options.text("model").pipe(Options.withDescription("Pin a model id (with --provider)"), Options.optional),
    json: jsonOption,
    noFallback: Options.boolean("no-fallback").pipe(
      Options.withDescription("Fail instead of falling back to a template")
    )
  },
  (args) =>
    Effect.gen(function*() {
      const { gateway, sayGateway } = yield* resolveGateway
      // On a terminal, one progress line that updates in place; plain lines otherwise. Both on stderr.
      const live = process.stderr.isTTY === true ? liveProgress() : undefined
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
        Stream.unwrap(Effect.as(sayGateway, engine.generateStream(request, { useFallback: !args.noFallback }))).pipe(
          Stream.tap((event) => (live === undefined ? plainProgress(event) : live(event))),
          Stream.runLast
        )).pipe(
          Effect.provide(layer),
          Effect.onInterrupt(() =>
            Console.error(`${live === undefined ? "" : "\n"}Interrupted before the plot was finished.`)
          ),
          Effect.either
        )
      if (Either.isLeft(outcome)) {
        const error = outcome.left
        if (ConfigError.isConfigError(error)) {
          return yield* UsageError.fromConfigError(error)
        }
        const usage = usageErrorOf(error, args.project)
        if (usage !== undefined) {
          return yield* usage
        }
        yield* Console.error(Errors.userMessage(error))
        yield* Console.error(`(${Errors.errorType(error)}) ${error.message}`)
        return yield* setExitCode(1)
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
    }).pipe(
      Effect.scoped,
      Effect.catchIf(ConfigError.isConfigError, (error) =>
        Effect.fail(UsageError.fromConfigError(error))),
      // What the environment names and the engine refuses before any generation (the deployments file).
      Effect.catchTag("RequestValidationError", (error) =>
        Effect.fail(UsageError.flag(error.field, error.reason)))
    )
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
    port: integerOption("port", { min: 0, max: 65_535 }).pipe(Options.withDefault(8787)),
    seed: integerOption("seed").pipe(Options.withDefault(1)),
    faults: Options.text("faults").pipe(
      Options.withDescription(
        "Random fault rates, such as rate_limit=0.1,server_error=0.05,reset=0.02, or chaos for the soak's mix"
      ),
      Options.withDefault("")
    ),
    latencyMs: integerOption("latency-ms", { min: 0 }).pipe(
      Options.withDescription("Latency added to every answer"),
      Options.withDefault(0)
    ),
    eventIntervalMs: integerOption("event-interval-ms", { min: 0 }).pipe(
      Options.withDescription("Time between a stream's events, each written on its own (0: a stream at once)"),
      Options.withDefault(0)
    )
  },
  ({ eventIntervalMs, faults, latencyMs, port, seed }) =>
    Effect.gen(function*() {
      const rates = yield* Either.match(parseFaultRates(faults), {
        onLeft: (reason) => Effect.fail(UsageError.flag("--faults", reason)),
        onRight: Effect.succeed
      })
      const context = yield* Layer.build(
        GatewaySimulator.layer({ port, seed, faults: { rates, latencyMs }, eventIntervalMs })
      )
      const simulator = Context.get(context, GatewaySimulator.GatewaySimulator)
      // What it prints is what the command is for: the addresses, on stdout.
      yield* Console.log(`Gateway simulator listening on ${simulator.url}`)
      yield* Console.log(`  OPENAI_BASE_URL=${simulator.openaiBaseUrl}`)
      yield* Console.log(`  ANTHROPIC_BASE_URL=${simulator.anthropicBaseUrl}`)
      if (Object.keys(rates).length > 0) yield* Console.log(`  faults: ${faults}`)
      yield* Console.error("Any non-empty API key is accepted. Stop with Ctrl-C.")
      return yield* Effect.never
    }).pipe(
      Effect.scoped,
      Effect.catchTag("ServeError", (error) =>
        Effect.fail(UsageError.flag("--port", `cannot listen on ${port} (${String(error.cause)})`))),
      // A signal is how a server ends: a normal end.
      Effect.onInterrupt(() =>
        setExitCode(0)
      )
    )
).pipe(Command.withDescription("Serve the gateway simulator (OpenAI Responses and Anthropic Messages APIs)"))

// =============================================================================
// batch
// =============================================================================

const progressBar = (done: ReadonlyArray<Batch.Outcome>, total: number, elapsedMs: number) => {
  const width = 24
  const filled = total === 0 ? width : Math.round((done.length / total) * width)
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
    requests: existingPathOption("requests", "File").pipe(
      Options.withDescription("A JSONL file: one PlotRequest per line")
    ),
    projects: existingPathOption("projects", "Directory", "examples/projects").pipe(
      Options.withDescription("The directory of <projectId>.json project files (default: examples/projects)")
    ),
    concurrency: integerOption("concurrency", { min: 1 }).pipe(Options.withDefault(4)),
    out: Options.text("out").pipe(
      Options.withPseudoName("file"),
      Options.withDescription("Where to write one result or typed error per line, each as its request finishes"),
      Options.optional
    ),
    resume: Options.boolean("resume").pipe(
      Options.withDescription(
        "Skip the requests whose index is already in --out (an interrupted run's) and append to it"
      )
    ),
    report: Options.text("report").pipe(
      Options.withPseudoName("directory"),
      Options.withDescription("Where to write an HTML report"),
      Options.optional
    ),
    json: jsonOption
  },
  (args) =>
    Effect.gen(function*() {
      const out = Option.getOrUndefined(args.out)
      if (args.resume && out === undefined) {
        return yield* UsageError.flag("--resume", "needs --out, the file the earlier run wrote")
      }
      const requests = yield* Batch.readRequests(args.requests)
      const alreadyFinished = args.resume && out !== undefined
        ? yield* Batch.finishedIndexes(out, requests.length)
        : undefined
      const { gateway, sayGateway } = yield* resolveGateway
      const quotas = yield* ProviderRateLimiter.quotasConfig
      // The four alert rules watch the batch: a log line on stderr, and the webhook when configured.
      const layer = PlotEngine.layer({ gateway, store: ProjectContextStore.layerDirectory(args.projects) })
      const toRun = requests.length - (alreadyFinished?.size ?? 0)
      const startedAt = Date.now()
      const tty = process.stderr.isTTY === true
      const endProgressLine = Effect.sync(() => void (tty && process.stderr.write("\n")))
      const writeReport = (outcomes: ReadonlyArray<Batch.Outcome>, summary: Batch.Summary) =>
        Option.map(args.report, (directory) =>
          Batch.writeReport(directory, outcomes, summary, quotas.openai.requestsPerMinute))
      // Interrupted (SIGINT, SIGTERM), the batch tells what it did on stderr: stdout is for a finished batch.
      const onInterrupt = (outcomes: ReadonlyArray<Batch.Outcome>, summary: Batch.Summary) =>
        Effect.gen(function*() {
          yield* endProgressLine
          yield* Console.error(Batch.describeSummary(summary))
          const report = writeReport(outcomes, summary)
          if (Option.isSome(report)) {
            yield* Console.error(`Report:    ${report.value}`)
          }
          const finished = summary.requests - summary.unfinished
          yield* Console.error(
            `Interrupted after ${finished} of ${summary.requests} requests; ${
              out === undefined
                ? "without --out, a rerun starts over."
                : `rerun with --resume to run the other ${summary.unfinished}.`
            }`
          )
        })
      const { outcomes, summary } = yield* Effect.flatMap(PlotGeneration.PlotGeneration, (engine) =>
        Effect.zipRight(
          sayGateway,
          Batch.run(engine, requests, {
            concurrency: args.concurrency,
            out,
            alreadyFinished,
            onProgress: (done) =>
              Effect.sync(() => {
                const line = progressBar(done, toRun, Date.now() - startedAt)
                process.stderr.write(tty ? `\r\x1b[2K${line}` : `${line}\n`)
              }),
            onInterrupt
          })
        )).pipe(Effect.provide(layer))
      yield* endProgressLine
      const report = writeReport(outcomes, summary)
      if (args.json) {
        yield* Console.log(JSON.stringify({ ...summary, report: Option.getOrNull(report) }, null, 2))
      } else {
        yield* Console.log(Batch.describeSummary(summary))
        if (Option.isSome(report)) {
          yield* Console.log(`Report:    ${report.value}`)
        }
      }
      if (summary.failed > 0) {
        yield* setExitCode(1)
      }
    }).pipe(
      Effect.scoped,
      Effect.catchIf(ConfigError.isConfigError, (error) =>
        Effect.fail(UsageError.fromConfigError(error))),
      // What Batch refuses (the requests file, --out) is named by its flag.
      Effect.catchTag("RequestValidationError", (error) => Effect.fail(UsageError.flag(error.field, error.reason)))
    )
).pipe(Command.withDescription("Generate plots for every request of a JSONL file"))

// =============================================================================
// Running
// =============================================================================

/**
 * The root command.
 *
 * @since 0.1.0
 */
export const command = Command.make("plot-engine").pipe(Command.withSubcommands([generate, batch, simulate]))

/**
 * Runs the CLI on an argv as @effect/cli does, failures included.
 *
 * @since 0.1.0
 */
export const run = Command.run(command, { name: "plot-engine", version: "0.1.0" })

/**
 * The CLI as the executable runs it: `--log-level` taken wherever it stands, logs on stderr, a usage error as
 * one sentence on stderr with exit code 2, an unexpected failure logged on stderr (exit code 1, by the runtime's
 * teardown).
 *
 * @since 0.1.0
 */
export const main = (argv: ReadonlyArray<string>) =>
  Effect.flatMap(extractLogLevel(argv), ({ argv, level }) =>
    Option.match(level, {
      // Warnings by default: the summary already says what the info lines would (each generation's metrics).
      onNone: () => Logger.withMinimumLogLevel(run(argv), LogLevel.Warning),
      onSome: (level) => Logger.withMinimumLogLevel(run(argv), level)
    })).pipe(
      colorsWhereShown,
      Effect.catchIf(ValidationError.isValidationError, (error) =>
        // @effect/cli has printed its message on stderr already; a few of its errors carry none.
        Effect.zipRight(
          HelpDoc.isEmpty(error.error) ? Console.error("The command line is not valid: see --help.") : Effect.void,
          setExitCode(2)
        )),
      Effect.catchTag("UsageError", (error) => Effect.zipRight(Console.error(error.message), setExitCode(2))),
      Effect.tapErrorCause((cause) =>
        Cause.isInterruptedOnly(cause)
          ? Effect.void
          : Effect.logError("plot-engine stopped on an unexpected error", cause)
      ),
      Effect.provide(layerLogger)
    )
