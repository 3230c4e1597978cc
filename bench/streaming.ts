/**
 * Benchmark `streaming`: what a streamed generation costs the process that reads it, per provider, on the same
 * stream from the simulator (its own process, loopback). CPU per delta (`process.cpuUsage`, user + system, over
 * whole streams, GC included) for the engine's `generateStream`, the `@effect/ai` client alone making the engine's
 * call (`streamText`, the outline tool forced), the official SDK sending the body that client sends, and `fetch`
 * with a plain line splitter; the same (but `fetch`) on paced streams, each event written on its own as a
 * provider writes while its model does (`paced*`); then the heap a held stream keeps (1,000 streams stalled midway
 * by the simulator's `stall` fault, after a full GC), engine against the client alone. Each path is warmed first
 * (`warmStreams`: the engine's longer path ran 70 µs a delta over its first 25 streams and settled only after about
 * 150), then the paths take turns over eight rounds, the order rotating each round, so that the machine's drift falls
 * on all alike. A path's figure is the median of its rounds, and a ratio the median of its ratios within a round.
 */
import Anthropic from "@anthropic-ai/sdk"
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as Response from "@effect/ai/Response"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import OpenAI from "openai"
import * as Alerts from "../src/Alerts.js"
import { PlotRequest, type PlotRequestInput, type ProviderName } from "../src/Domain.js"
import * as ModelCatalog from "../src/ModelCatalog.js"
import * as PlotGeneration from "../src/PlotGeneration.js"
import * as ProjectContextStore from "../src/ProjectContextStore.js"
import * as PromptBuilder from "../src/PromptBuilder.js"
import * as ProviderRateLimiter from "../src/ProviderRateLimiter.js"
import * as Providers from "../src/Providers.js"
import * as ResponseParser from "../src/ResponseParser.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import { median, sampleProject } from "./fixtures.js"
import { type Gateway, startGateway } from "./gateway.js"

const apiKey = "sk-bench-0123456789"
const streamsPerRound = 20
const rounds = 8
const warmStreams = 150
const heldStreams = Number(process.env.STREAMING_HELD_STREAMS ?? 1_000)
/** The paced simulator's time between events, and how many of its streams run at once. */
const pacedIntervalMs = 1
const pacedConcurrency = 10
const goals = { engineOverSdkCpu: 2.5, engineOverClientHeld: 2 }

/** The retry policy of the held streams' engine: limits longer than the run, so that a held stream stays held. */
const heldPolicy: RetryPolicy.Policy = {
  ...RetryPolicy.defaults,
  attemptTimeout: "30 minutes",
  deadline: "30 minutes",
  firstTokenTimeout: "30 minutes",
  idleTimeout: "30 minutes"
}

/** Where the run is, on stderr (a run takes minutes). */
const log = (message: string) => console.error(`[streaming] ${message}`)

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const request = (provider: ProviderName): PlotRequestInput => ({
  projectId: "novel",
  userPrompt: "What does Mara find under the floor of the lamp room?",
  provider
})

/**
 * The engine over both providers at a gateway, as a host builds it (real clients, undici), logs at errors only;
 * with `policy`, its retry policy.
 */
const engineRuntime = (gateway: Gateway, policy?: RetryPolicy.Policy) =>
  ManagedRuntime.make(
    PlotGeneration.layer(policy === undefined ? {} : { retryPolicy: policy }).pipe(
      Layer.provide(Providers.layer(providerConfig(gateway))),
      Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
      Layer.provide(ProviderRateLimiter.layerUnlimited),
      Layer.provide(Alerts.layerDisabled),
      Layer.provide(NodeHttpClient.layerUndici),
      Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
    )
  )

const providerConfig = (gateway: Gateway) => ({
  openai: { apiKey: Redacted.make(apiKey), baseUrl: gateway.openaiBaseUrl },
  anthropic: { apiKey: Redacted.make(apiKey), baseUrl: gateway.url }
})

/** Deltas of the outline's JSON (or text) in an event of either provider's wire, as the SDKs and fetch see it. */
const isDelta = (event: { readonly type?: unknown; readonly delta?: unknown }) =>
  event.type === "response.function_call_arguments.delta" || event.type === "response.output_text.delta" ||
  (event.type === "content_block_delta" && typeof event.delta === "object")

/**
 * The `@effect/ai` client alone (as `Providers` configures it) making the engine's streamed call for the model the
 * engine chose, and the body it sent (for the SDK and `fetch` to send the same).
 */
const effectAiClient = async (gateway: Gateway, provider: ProviderName, modelId: string) => {
  const model = ModelCatalog.find(ModelCatalog.defaultCatalog, provider, modelId)
  if (model._tag === "None") throw new Error(`unknown model ${modelId}`)
  const built = PromptBuilder.build(new PlotRequest(request(provider)), sampleProject, model.value)
  let body: unknown
  const recording = Layer.effect(
    HttpClient.HttpClient,
    Effect.map(HttpClient.HttpClient, (client) =>
      HttpClient.tapRequest(client, (sent) =>
        Effect.sync(() => {
          if (sent.body._tag === "Uint8Array") body ??= JSON.parse(new TextDecoder().decode(sent.body.body))
        })))
  ).pipe(Layer.provide(NodeHttpClient.layerUndici))
  const runtime = ManagedRuntime.make(
    Layer.scoped(Providers.Providers, Providers.make(providerConfig(gateway))).pipe(Layer.provide(recording))
  )
  const languageModel = await runtime.runPromise(
    Effect.flatMap(Providers.Providers, (providers) =>
      providers.languageModel(provider, modelId, {
        maxOutputTokens: built.maxOutputTokens,
        temperature: built.temperature,
        reasoningEffort: built.reasoningEffort
      }))
  )
  // The model's own method, as the engine calls it: through the accessor and `Stream.provideService`, every effect
  // of the stream would run with the model provided anew (several a network chunk).
  const stream = languageModel.streamText({
    prompt: built.prompt,
    toolkit: ResponseParser.outlineToolkit,
    toolChoice: { tool: "plot_outline" },
    disableToolCallResolution: true
  })
  const countDeltas = Stream.runFold(
    stream,
    0,
    (n, part) => part.type === "tool-params-delta" || part.type === "text-delta" ? n + 1 : n
  )
  return {
    /** The body of the first request sent. */
    body: () => body as Record<string, unknown>,
    /** One whole stream; its deltas. */
    run: () => runtime.runPromise(countDeltas),
    /** One whole stream's parts, encoded as a provider's model hands them to `streamText`. */
    encodedParts: () =>
      runtime.runPromise(
        Effect.flatMap(Stream.runCollect(stream), (parts) => Schema.encode(encodedStreamParts)(Chunk.toArray(parts)))
      ),
    /** Starts a stream and resolves once its first delta arrived; the fiber holds it until interrupted. */
    hold: () =>
      new Promise<Fiber.RuntimeFiber<void, unknown>>((resolve) => {
        const fiber: Fiber.RuntimeFiber<void, unknown> = runtime.runFork(
          Stream.runForEach(stream, (part) =>
            part.type === "tool-params-delta" || part.type === "text-delta"
              ? Effect.sync(() => resolve(fiber))
              : Effect.void)
        )
      }),
    dispose: () => runtime.dispose()
  }
}

/** The official SDK sending the client's body; its deltas. */
const sdkStream = (gateway: Gateway, provider: ProviderName, body: Record<string, unknown>) => {
  const request = { ...body, stream: true } as any
  const openai = new OpenAI({ apiKey, baseURL: gateway.openaiBaseUrl, maxRetries: 0 })
  const anthropic = new Anthropic({ apiKey, baseURL: gateway.url, maxRetries: 0 })
  const open = (): Promise<unknown> =>
    provider === "openai" ? openai.responses.create(request) : anthropic.messages.create(request)
  return async () => {
    let deltas = 0
    for await (const event of await open() as AsyncIterable<any>) if (isDelta(event)) deltas++
    return deltas
  }
}

/** `fetch` and a plain line splitter: each `data:` line parsed as JSON, nothing else. */
const fetchStream = (gateway: Gateway, provider: ProviderName, body: Record<string, unknown>) => {
  const url = provider === "openai" ? `${gateway.openaiBaseUrl}/responses` : `${gateway.url}/v1/messages`
  const headers = provider === "openai"
    ? { "content-type": "application/json", authorization: `Bearer ${apiKey}` }
    : { "content-type": "application/json", "x-api-key": apiKey, "anthropic-version": "2023-06-01" }
  const payload = JSON.stringify({ ...body, stream: true })
  return async () => {
    const response = await fetch(url, { method: "POST", headers, body: payload })
    const decoder = new TextDecoder()
    let deltas = 0
    let rest = ""
    const reader = response.body!.getReader()
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      const lines = (rest + decoder.decode(read.value, { stream: true })).split("\n")
      rest = lines.pop()!
      for (const line of lines) {
        if (line.startsWith("data: ") && isDelta(JSON.parse(line.slice(6)))) deltas++
      }
    }
    return deltas
  }
}

const encodedStreamParts = Schema.Array(Response.StreamPart(ResponseParser.outlineToolkit))

/**
 * The engine's streaming path without the network: the parts of a stream, replayed in one chunk by a model in the
 * process, through `generateStream` and through a bare `streamText`. What the engine adds to a stream there is its
 * own work per stream (the simulator sends a stream in one network chunk, so there is next to no work per delta
 * besides the client's), apart from the client, the sockets and the SDK's noise. Microseconds of CPU per stream:
 * the medians of eight rounds of 100 streams each, in turns, after 500 of each.
 */
const replayed = async (provider: ProviderName, parts: ReadonlyArray<unknown>) => {
  const model = await Effect.runPromise(LanguageModel.make({
    generateText: () => Effect.dieMessage("the replay streams only"),
    streamText: () => Stream.fromChunk(Chunk.unsafeFromArray(parts as Array<Response.StreamPartEncoded>))
  }))
  const engine = ManagedRuntime.make(
    PlotGeneration.layer().pipe(
      Layer.provide(Providers.layerModels({ [provider]: () => Effect.succeed(model) })),
      Layer.provide(ProjectContextStore.layerMemory({ novel: sampleProject })),
      Layer.provide(ProviderRateLimiter.layerUnlimited),
      Layer.provide(Alerts.layerDisabled),
      Layer.provide(Logger.minimumLogLevel(LogLevel.Error))
    )
  )
  const bare = LanguageModel.streamText({
    prompt: "replayed",
    toolkit: ResponseParser.outlineToolkit,
    toolChoice: { tool: "plot_outline" },
    disableToolCallResolution: true
  }).pipe(Stream.runDrain, Effect.provideService(LanguageModel.LanguageModel, model))
  const generation = PlotGeneration.PlotGeneration.pipe(
    Effect.map((service) => service.generateStream(request(provider), { useFallback: false })),
    Stream.unwrap
  )
  const last = await engine.runPromise(Stream.runLast(generation))
  if (last._tag !== "Some" || last.value._tag !== "Completed" || last.value.result.isTemplate) {
    throw new Error("the replayed stream failed")
  }
  const paths = { engine: () => engine.runPromise(Stream.runDrain(generation)), bare: () => Effect.runPromise(bare) }
  const names = Object.keys(paths) as Array<keyof typeof paths>
  for (const name of names) for (let i = 0; i < 500; i++) await paths[name]()
  const perRound = await inTurns(names, async (name) => {
    const before = process.cpuUsage()
    for (let i = 0; i < 100; i++) await paths[name]()
    const used = process.cpuUsage(before)
    return (used.user + used.system) / 100
  })
  await engine.dispose()
  return {
    replayEngineUsPerStream: Math.round(median(perRound.get("engine")!)),
    replayStreamTextUsPerStream: Math.round(median(perRound.get("bare")!)),
    replayEngineOverheadUsPerStream: Math.round(
      median(perRound.get("engine")!.map((us, round) => us - perRound.get("bare")![round]!))
    )
  }
}

/**
 * Measures each path once a round over `rounds` rounds, the order rotating each round (each path first in turn): its
 * measures, one per round, in order.
 */
const inTurns = async <K extends string>(
  names: ReadonlyArray<K>,
  measure: (name: K) => Promise<number>,
  onRound?: (round: number) => void
): Promise<Map<K, Array<number>>> => {
  const perRound = new Map(names.map((name) => [name, [] as Array<number>]))
  for (let round = 0; round < rounds; round++) {
    onRound?.(round)
    for (let turn = 0; turn < names.length; turn++) {
      const name = names[(round + turn) % names.length]!
      perRound.get(name)!.push(await measure(name))
    }
  }
  return perRound
}

/** CPU microseconds (user + system) of `n` streams, `atOnce` at a time, and their deltas. */
const cpuOf = async (n: number, stream: () => Promise<number>, atOnce = 1) => {
  const before = process.cpuUsage()
  let deltas = 0
  for (let i = 0; i < n; i += atOnce) {
    for (const seen of await Promise.all(Array.from({ length: Math.min(atOnce, n - i) }, stream))) deltas += seen
  }
  const used = process.cpuUsage(before)
  return { us: used.user + used.system, deltas }
}

/**
 * Each path's CPU per delta on a stream of `deltas` deltas: each path checked to see them all, warmed over `warm`
 * streams, then in turns, `perRound` streams a round, `atOnce` at a time. A path's figure is the median of its
 * rounds, and a ratio the median of the ratios within a round.
 */
const perDeltaInTurns = async <K extends string>(
  label: string,
  paths: Record<K, () => Promise<number>>,
  deltas: number,
  streams: { readonly warm: number; readonly perRound: number; readonly atOnce: number }
) => {
  const names = Object.keys(paths) as Array<K>
  for (const name of names) {
    log(`${label}: warming ${name}`)
    const seen = await paths[name]()
    if (seen !== deltas) throw new Error(`${name} saw ${seen} deltas of ${deltas}`)
    await cpuOf(streams.warm, paths[name], streams.atOnce)
  }
  const perRound = await inTurns(names, async (name) => {
    const { deltas, us } = await cpuOf(streams.perRound, paths[name], streams.atOnce)
    return us / deltas
  }, (round) => log(`${label}: round ${round + 1} of ${rounds}`))
  const perDelta = (name: K) => round1(median(perRound.get(name)!))
  log(`${label}: µs per delta ${names.map((name) => `${name} ${perDelta(name)}`).join(", ")}`)
  return {
    perDelta,
    ratio: (over: K, under: K) =>
      round2(median(perRound.get(over)!.map((us, round) => us / perRound.get(under)![round]!)))
  }
}

/** Heap bytes kept per stream by `n` streams each held after its first delta (full GCs on both sides). */
const heldBytes = async <F>(n: number, hold: () => Promise<F>, release: (held: ReadonlyArray<F>) => Promise<void>) => {
  gc()
  gc()
  const before = process.memoryUsage().heapUsed
  const held: Array<F> = []
  // A hundred at a time, so that the simulator and the sockets are not the limit; a batch that is not held within
  // a minute fails the run rather than hang it.
  for (let i = 0; i < n; i += 100) {
    let timer: ReturnType<typeof setTimeout> | undefined
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`held ${held.length} of ${n} streams, then no more`)), 60_000)
    })
    held.push(...await Promise.race([Promise.all(Array.from({ length: 100 }, hold)), timedOut]))
    clearTimeout(timer)
  }
  gc()
  gc()
  const after = process.memoryUsage().heapUsed
  await release(held)
  return (after - before) / n
}

const interruptAll = (fibers: ReadonlyArray<Fiber.RuntimeFiber<unknown, unknown>>) =>
  Effect.runPromise(Fiber.interruptAll(fibers))

interface Row {
  readonly provider: ProviderName
  readonly model: string
  readonly deltas: number
  readonly engineCpuUsPerDelta: number
  readonly effectAiCpuUsPerDelta: number
  readonly sdkCpuUsPerDelta: number
  readonly fetchCpuUsPerDelta: number
  readonly engineOverSdk: number
  readonly replayEngineUsPerStream: number
  readonly replayStreamTextUsPerStream: number
  readonly replayEngineOverheadUsPerStream: number
  readonly pacedEngineCpuUsPerDelta: number
  readonly pacedEffectAiCpuUsPerDelta: number
  readonly pacedSdkCpuUsPerDelta: number
  readonly pacedEngineOverSdk: number
  readonly engineHeldKbPerStream: number
  readonly effectAiHeldKbPerStream: number
  readonly engineOverClientHeld: number
}

const round1 = (x: number) => Number(x.toFixed(1))
const round2 = (x: number) => Number(x.toFixed(2))

export const run = async () => {
  const gateway = await startGateway()
  const stalling = await startGateway(["--faults", "stall=1"])
  const paced = await startGateway(["--event-interval-ms", String(pacedIntervalMs)])
  const engine = engineRuntime(gateway)
  const pacedEngine = engineRuntime(paced)
  // A held stream waits within its limits: with the default idle limit (20 s), the first streams held timed out
  // and were retried while the later ones were opened, and on a busy machine the retries crowded out the rest.
  const stalledEngine = engineRuntime(stalling, heldPolicy)
  const generation = (provider: ProviderName) =>
    PlotGeneration.PlotGeneration.pipe(
      Effect.map((service) => service.generateStream(request(provider), { useFallback: false }))
    ).pipe(Stream.unwrap)

  /** CPU per delta of each path on the provider's stream, and the ratio of the engine's to the SDK's. */
  const cpuPerDelta = async (provider: ProviderName) => {
    const first = await engine.runPromise(
      Stream.runLast(generation(provider)).pipe(
        Effect.map((last) => last.pipe((o) => o._tag === "Some" ? o.value : undefined))
      )
    )
    if (first?._tag !== "Completed" || first.result.isTemplate) throw new Error("the benchmark's stream failed")
    const modelId = first.result.model
    log(`${provider}: ${modelId}`)
    const client = await effectAiClient(gateway, provider, modelId)
    const deltas = await client.run()
    // The engine streams the same prompt: the same stream, the same deltas.
    const paths = {
      engine: () => engine.runPromise(Stream.runDrain(generation(provider))).then(() => deltas),
      effectAi: client.run,
      sdk: sdkStream(gateway, provider, client.body()),
      fetch: fetchStream(gateway, provider, client.body())
    }
    const { perDelta, ratio } = await perDeltaInTurns(provider, paths, deltas, {
      warm: warmStreams,
      perRound: streamsPerRound,
      atOnce: 1
    })
    log(`${provider}: replayed in process`)
    const replay = await replayed(provider, await client.encodedParts())
    await client.dispose()
    return {
      provider,
      model: modelId,
      deltas,
      engineCpuUsPerDelta: perDelta("engine"),
      effectAiCpuUsPerDelta: perDelta("effectAi"),
      sdkCpuUsPerDelta: perDelta("sdk"),
      fetchCpuUsPerDelta: perDelta("fetch"),
      engineOverSdk: ratio("engine", "sdk"),
      ...replay
    }
  }

  /**
   * CPU per delta on a paced stream (each event written on its own, as a provider writes while the model does, so
   * that each event is a network chunk of its own), `pacedConcurrency` streams at once: engine, client and SDK.
   */
  const pacedCpuPerDelta = async (provider: ProviderName, modelId: string) => {
    const client = await effectAiClient(paced, provider, modelId)
    const deltas = await client.run()
    const paths = {
      engine: () => pacedEngine.runPromise(Stream.runDrain(generation(provider))).then(() => deltas),
      effectAi: client.run,
      sdk: sdkStream(paced, provider, client.body())
    }
    const { perDelta, ratio } = await perDeltaInTurns(`${provider}, paced`, paths, deltas, {
      warm: 5 * pacedConcurrency,
      perRound: 2 * pacedConcurrency,
      atOnce: pacedConcurrency
    })
    await client.dispose()
    return {
      pacedEngineCpuUsPerDelta: perDelta("engine"),
      pacedEffectAiCpuUsPerDelta: perDelta("effectAi"),
      pacedSdkCpuUsPerDelta: perDelta("sdk"),
      pacedEngineOverSdk: ratio("engine", "sdk")
    }
  }

  /** Heap per held stream, engine and client: the simulator stalls each midway; held once its first delta arrived. */
  const heldPerStream = async (provider: ProviderName, modelId: string) => {
    const clientHold = await effectAiClient(stalling, provider, modelId)
    const engineHold = () =>
      new Promise<Fiber.RuntimeFiber<void, unknown>>((resolve) => {
        const fiber: Fiber.RuntimeFiber<void, unknown> = stalledEngine.runFork(
          Stream.runForEach(generation(provider), (event) =>
            event._tag === "TextDelta" ? Effect.sync(() => resolve(fiber)) : Effect.void)
        )
      })
    log(`${provider}: held streams`)
    await heldBytes(100, engineHold, interruptAll) // warm
    const engineHeld = await heldBytes(heldStreams, engineHold, interruptAll)
    await heldBytes(100, clientHold.hold, interruptAll)
    const clientHeld = await heldBytes(heldStreams, clientHold.hold, interruptAll)
    await clientHold.dispose()
    return {
      engineHeldKbPerStream: round1(engineHeld / 1024),
      effectAiHeldKbPerStream: round1(clientHeld / 1024),
      engineOverClientHeld: round2(engineHeld / clientHeld)
    }
  }

  try {
    // The CPU of both providers first: a thousand held streams leave a heap that taxes whatever runs next.
    const cpu = []
    for (const provider of ["openai", "anthropic"] as const) {
      const row = await cpuPerDelta(provider)
      cpu.push({ ...row, ...await pacedCpuPerDelta(provider, row.model) })
    }
    const rows: Array<Row> = []
    for (const row of cpu) rows.push({ ...row, ...await heldPerStream(row.provider, row.model) })
    return {
      warmStreams,
      streamsPerRound,
      rounds,
      heldStreams,
      rows,
      goals: {
        engineOverSdk: `at most ${goals.engineOverSdkCpu}x the official SDK's CPU per delta`,
        engineOverClientHeld: `at most ${goals.engineOverClientHeld}x the @effect/ai client's heap per held stream`
      },
      met: rows.every((r) =>
        r.engineOverSdk <= goals.engineOverSdkCpu && r.engineOverClientHeld <= goals.engineOverClientHeld
      )
    }
  } finally {
    await engine.dispose()
    await pacedEngine.dispose()
    await stalledEngine.dispose()
    gateway.stop()
    stalling.stop()
    paced.stop()
  }
}
