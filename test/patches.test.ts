/**
 * The patches of `patches/` are applied to what runs (`npm ci` runs patch-package from postinstall). Their effects
 * are tested where they show: the mid-stream errors in `test/integration/faults.test.ts`; the decoders made once
 * per toolkit in the pipeline benchmark, and here by what the module holds; the SSE parser's linear scan and the
 * streams' cheaper decoding here (their cost in `npm run bench -- streaming`).
 */
import * as AnthropicClient from "@effect/ai-anthropic/AnthropicClient"
import * as AnthropicLanguageModel from "@effect/ai-anthropic/AnthropicLanguageModel"
import * as OpenAiClient from "@effect/ai-openai/OpenAiClient"
import * as IdGenerator from "@effect/ai/IdGenerator"
import * as LanguageModel from "@effect/ai/LanguageModel"
import * as Prompt from "@effect/ai/Prompt"
import * as Response from "@effect/ai/Response"
import * as Toolkit from "@effect/ai/Toolkit"
import * as Sse from "@effect/experimental/Sse"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it, vi } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Mailbox from "effect/Mailbox"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as SchemaAST from "effect/SchemaAST"
import * as Stream from "effect/Stream"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const require = createRequire(import.meta.url)
const packageDir = (name: string) => path.dirname(require.resolve(`${name}/package.json`))
const read = (name: string, file: string) => readFileSync(path.join(packageDir(name), file), "utf8")

/** A stream of `n` events as a provider sends them, about 450 bytes each. */
const sseText = (n: number, newline = "\n") =>
  Array.from(
    { length: n },
    (_, i) =>
      `event: response.function_call_arguments.delta${newline}data: ${
        JSON.stringify({ type: "response.function_call_arguments.delta", sequence_number: i, delta: "x".repeat(360) })
      }${newline}${newline}`
  ).join("")

/**
 * Feeds `text` to a parser in pieces of `size` characters; the events, and the milliseconds it took (on the
 * performance clock: the CPU clock's ticks are too coarse for a parse of a millisecond).
 */
const parse = (text: string, size: number) => {
  const events: Array<string> = []
  const parser = Sse.makeParser((event) => {
    if (event._tag === "Event") events.push(event.data)
  })
  const started = performance.now()
  for (let start = 0; start < text.length; start += size) parser.feed(text.slice(start, start + size))
  return { events, millis: performance.now() - started }
}

const usageOfMessage = {
  input_tokens: 472,
  cache_creation_input_tokens: 0,
  cache_read_input_tokens: 0,
  cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
  output_tokens: 2,
  service_tier: "standard"
}

/** Anthropic's events that carry a message, a block or its usage, as production sends them. */
const wholeAnthropicEvents: ReadonlyArray<Record<string, unknown>> = [
  {
    type: "message_start",
    message: {
      id: "msg_01",
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5-20250929",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: usageOfMessage
    }
  },
  { type: "content_block_start", index: 0, content_block: { type: "tool_use", id: "toolu_1", name: "f", input: {} } },
  { type: "content_block_start", index: 1, content_block: { type: "text", text: "" } },
  { type: "content_block_start", index: 1, content_block: { type: "thinking", thinking: "", signature: "" } },
  {
    type: "message_delta",
    delta: { stop_reason: "tool_use", stop_sequence: null },
    usage: { output_tokens: 15, server_tool_use: { web_search_requests: 1 } }
  }
]

const responseOf = (status: string, output: ReadonlyArray<unknown>, usage: unknown) => ({
  id: "resp_1",
  object: "response",
  created_at: 1796428812,
  status,
  background: false,
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: 4096,
  model: "gpt-4.1-mini",
  output,
  parallel_tool_calls: true,
  previous_response_id: null,
  reasoning: { effort: null, summary: null },
  service_tier: "default",
  store: true,
  temperature: 1,
  text: { format: { type: "text" }, verbosity: "medium" },
  tool_choice: { type: "function", name: "plot_outline" },
  tools: [],
  top_p: 1,
  truncation: "disabled",
  usage,
  user: null,
  metadata: {}
})

const functionCall = {
  id: "fc_1",
  type: "function_call",
  status: "completed",
  call_id: "call_1",
  name: "plot_outline",
  arguments: "{}"
}

/** OpenAI's events that carry a response or an output item, as production sends them. */
const wholeOpenAiEvents: ReadonlyArray<Record<string, unknown>> = [
  { type: "response.created", sequence_number: 0, response: responseOf("in_progress", [], null) },
  { type: "response.output_item.added", sequence_number: 2, output_index: 0, item: { ...functionCall, arguments: "" } },
  {
    type: "response.output_item.done",
    sequence_number: 9,
    output_index: 0,
    item: {
      id: "msg_1",
      type: "message",
      status: "completed",
      role: "assistant",
      content: [{ type: "output_text", text: "Hi", annotations: [], logprobs: [] }]
    }
  },
  {
    type: "response.completed",
    sequence_number: 10,
    response: responseOf("completed", [functionCall], {
      input_tokens: 4,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 1,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 5
    })
  }
]

/**
 * Variants of an event: each field, at any depth, dropped, nulled, or given a value of another kind (a string, a
 * number that is not an integer, a negative integer, an object, an array). The event's own `type` is kept, so that
 * each variant is one of its member's.
 */
const variantsOf = (event: Record<string, unknown>): Array<unknown> => {
  const paths: Array<Array<string>> = []
  const walk = (value: unknown, at: Array<string>) => {
    if (typeof value !== "object" || value === null) return
    for (const key of Object.keys(value)) {
      if (at.length > 0 || key !== "type") paths.push([...at, key])
      walk((value as Record<string, unknown>)[key], [...at, key])
    }
  }
  walk(event, [])
  const replacements: ReadonlyArray<unknown> = [undefined, null, "x", 1.5, -1, {}, []]
  return paths.flatMap((path) =>
    replacements.map((replacement) => {
      const copy = structuredClone(event)
      let holder: any = copy
      for (const key of path.slice(0, -1)) holder = holder[key]
      const key = path[path.length - 1]!
      if (replacement === undefined) {
        if (Array.isArray(holder)) holder.splice(Number(key), 1)
        else delete holder[key]
      } else {
        holder[key] = replacement
      }
      return copy
    })
  )
}

/** Claude's answer stopped as it filled the context window (its stop reason since Sonnet 4.5), streamed. */
const answerAtTheWindow = [
  {
    type: "message_start",
    message: {
      id: "msg_1",
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 10, output_tokens: 1 }
    }
  },
  { type: "content_block_start", index: 0, content_block: { type: "text", text: "" } },
  { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "The lamp" } },
  { type: "content_block_stop", index: 0 },
  {
    type: "message_delta",
    delta: { stop_reason: "model_context_window_exceeded", stop_sequence: null },
    usage: { output_tokens: 5 }
  },
  { type: "message_stop" }
]

/** A body of SSE frames, one event each. */
const sseOf = (events: ReadonlyArray<unknown>) => events.map((event) => `data: ${JSON.stringify(event)}\n\n`).join("")

/** An HTTP client that answers any request with `text`. */
const replying = (text: string) =>
  HttpClient.make((request) =>
    Effect.succeed(HttpClientResponse.fromWeb(request, new globalThis.Response(text, { status: 200 })))
  )

/** What a provider's client makes of a stream of `events` decoded by `schema`: its events, or its failure. */
const streamedBy = <A, I>(
  provider: "anthropic" | "openai",
  schema: Schema.Schema<A, I>,
  events: ReadonlyArray<unknown>
) => {
  const collected = (stream: Stream.Stream<A, unknown>) =>
    Stream.runCollect(stream).pipe(Effect.map((made): Array<unknown> => [...made]), Effect.either)
  return (provider === "anthropic"
    ? Effect.flatMap(
      AnthropicClient.make({}),
      (client) => collected(client.streamRequest(HttpClientRequest.post("http://localhost/v1/messages"), schema))
    )
    : Effect.flatMap(
      OpenAiClient.make({}),
      (client) => collected(client.streamRequest(HttpClientRequest.post("http://localhost/v1/responses"), schema))
    )).pipe(Effect.provideService(HttpClient.HttpClient, replying(sseOf(events))))
}

describe("patches", () => {
  it("effect's Schema.Class constructors find their fields' defaults once per class (both module formats)", () => {
    for (const file of ["dist/esm/Schema.js", "dist/cjs/Schema.js"]) {
      expect(read("effect", file)).toContain("const constructorDefaultsOf = ")
    }
    class Attempted extends Schema.Class<Attempted>("Attempted")({
      name: Schema.String,
      tries: Schema.Number.pipe(Schema.propertySignature, Schema.withConstructorDefault(() => 1))
    }) {}
    expect(new Attempted({ name: "first" }).tries).toBe(1)
    // Unpatched, every construction lists the class's fields (`Reflect.ownKeys`) to look for defaults.
    const ownKeys = vi.spyOn(Reflect, "ownKeys")
    try {
      expect(new Attempted({ name: "second" }, true).tries).toBe(1)
      expect(new Attempted({ name: "third", tries: 3 }).tries).toBe(3)
      expect(ownKeys).not.toHaveBeenCalled()
    } finally {
      ownKeys.mockRestore()
    }
  })

  it("effect's union decoder makes the input-free parts of its errors once, not on every decode (both module formats)", () => {
    for (const file of ["dist/esm/ParseResult.js", "dist/cjs/ParseResult.js"]) {
      expect(read("effect", file)).toContain("const keyErrors = {};")
    }
    // Members told apart by two literal keys (as `@effect/ai`'s parts are): a text part has no `sourceType`.
    const Part = Schema.Union(
      Schema.Struct({ type: Schema.Literal("text"), text: Schema.String }),
      Schema.Struct({ type: Schema.Literal("source"), sourceType: Schema.Literal("url"), url: Schema.String }),
      Schema.Struct({ type: Schema.Literal("source"), sourceType: Schema.Literal("document"), title: Schema.String })
    )
    const decode = Schema.decodeUnknownEither(Part)
    expect(decode({ type: "text", text: "Mara" })).toStrictEqual(Either.right({ type: "text", text: "Mara" }))
    // Unpatched, every decode of a text part made the union of the missing key's literals (twice).
    const unionMake = vi.spyOn(SchemaAST.Union, "make")
    try {
      expect(Either.isRight(decode({ type: "text", text: "Elias" }))).toBe(true)
      expect(unionMake).not.toHaveBeenCalled()
    } finally {
      unionMake.mockRestore()
    }
    // The errors are what they were.
    const message = (input: unknown) =>
      Either.match(decode(input), { onLeft: ParseResult.TreeFormatter.formatErrorSync, onRight: () => "decoded" })
    const members = `{ readonly type: "text"; readonly text: string } | ` +
      `{ readonly type: "source"; readonly sourceType: "url"; readonly url: string } | ` +
      `{ readonly type: "source"; readonly sourceType: "document"; readonly title: string }`
    expect(message({ kind: "text" })).toBe(
      `${members}
├─ { readonly type: "text"; readonly text: string } | { readonly type: "source"; readonly sourceType: "url"; readonly url: string }
│  └─ ["type"]
│     └─ is missing
└─ { readonly type: "source"; readonly sourceType: "document"; readonly title: string }
   └─ ["sourceType"]
      └─ is missing`
    )
    expect(message({ type: "source", sourceType: "pdf" })).toBe(
      `${members}
├─ { readonly type: "source"; readonly sourceType: "document"; readonly title: string }
│  └─ ["sourceType"]
│     └─ Expected "document", actual "pdf"
└─ { readonly type: "source"; readonly sourceType: "url"; readonly url: string }
   └─ ["sourceType"]
      └─ Expected "url", actual "pdf"`
    )
  })

  it.effect("effect's Mailbox gives each message once when a chunk is offered after single messages (both module formats)", () =>
    Effect.gen(function*() {
      for (const file of ["dist/esm/internal/mailbox.js", "dist/cjs/internal/mailbox.js"]) {
        expect(read("effect", file)).toContain("// Patched: the messages moved into the chunk leave the array")
      }
      // Unpatched, the single messages stay in the mailbox's array after moving into its chunk: [1, 2, 3, 4, 1, 2].
      const mailbox = yield* Mailbox.make<number>()
      yield* mailbox.offer(1)
      yield* mailbox.offer(2)
      yield* mailbox.offerAll(Chunk.make(3, 4))
      yield* mailbox.end
      expect(Chunk.toArray(yield* Mailbox.toStream(mailbox).pipe(Stream.runCollect))).toEqual([1, 2, 3, 4])
      // The same in a sliding mailbox, which keeps the last messages up to its capacity.
      const sliding = yield* Mailbox.make<number>({ capacity: 3, strategy: "sliding" })
      yield* sliding.offer(1)
      yield* sliding.offerAll(Chunk.make(2, 3, 4))
      yield* sliding.end
      expect(Chunk.toArray(yield* Mailbox.toStream(sliding).pipe(Stream.runCollect))).toEqual([2, 3, 4])
    }))

  it("@effect/ai makes prompt and response parts without a spread, the same records as before (both module formats)", () => {
    for (const file of ["dist/esm/Prompt.js", "dist/cjs/Prompt.js", "dist/esm/Response.js", "dist/cjs/Response.js"]) {
      expect(read("@effect/ai", file)).toContain("const made = copyOf(params);")
    }
    const part = Prompt.makePart("text", { text: "the lamp room" })
    expect(Object.keys(part)).toEqual(["text", Prompt.PartTypeId, "type", "options"])
    expect(part).toEqual({ text: "the lamp room", [Prompt.PartTypeId]: Prompt.PartTypeId, type: "text", options: {} })
    const message = Prompt.userMessage({
      content: [part],
      options: { anthropic: { cacheControl: { type: "ephemeral" } } }
    })
    expect(Object.keys(message)).toEqual(["content", "options", Prompt.MessageTypeId, "role"])
    expect(message.options).toEqual({ anthropic: { cacheControl: { type: "ephemeral" } } })
    const delta = Response.makePart("text-delta", { id: "0", delta: "Mara" })
    expect(delta).toEqual({
      id: "0",
      delta: "Mara",
      [Response.PartTypeId]: Response.PartTypeId,
      type: "text-delta",
      metadata: {}
    })
    // An own `__proto__` key (JSON.parse makes one) stays a key, as a spread keeps it; it is not the prototype.
    const parsed = Prompt.makePart("text", JSON.parse(`{"text":"x","__proto__":{"polluted":true}}`))
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype)
    expect(Object.keys(parsed)).toEqual(["text", "__proto__", Prompt.PartTypeId, "type", "options"])
  })

  it("@effect/ai makes a toolkit's response schemas once (both module formats)", () => {
    for (const file of ["dist/esm/LanguageModel.js", "dist/cjs/LanguageModel.js"]) {
      const source = read("@effect/ai", file)
      expect(source).toContain("function cachedResponseSchema(")
      expect(source.match(/cachedResponseSchema\("/g)?.length).toBe(7)
    }
  })

  it("@effect/ai-openai reads a nested error event and reports response.failed as an error", () => {
    for (const format of ["esm", "cjs"]) {
      expect(read("@effect/ai-openai", `dist/${format}/OpenAiClient.js`)).toContain(
        "The error, as the production API sends it"
      )
      expect(read("@effect/ai-openai", `dist/${format}/OpenAiLanguageModel.js`)).toMatch(
        /case "response\.failed":\s*\{\s*parts\.push\(\{\s*type: "error"/
      )
    }
  })

  it("@effect/ai-openai passes a streamed refusal part on, as in a whole response (both module formats)", () => {
    // Its behaviour: `test/integration/refusals.test.ts` ("OpenAI's refusal part (streamed)").
    for (const format of ["esm", "cjs"]) {
      expect(read("@effect/ai-openai", `dist/${format}/OpenAiLanguageModel.js`)).toMatch(
        /a refusal part reaches the caller[\s\S]{0,200}part\.type === "refusal"/
      )
    }
  })

  it("@effect/ai-anthropic holds an unparsable tool call until the stop reason says whether it was a refusal", () => {
    // Its behaviour: `test/integration/refusals.test.ts` ("Anthropic's refusal stop (streamed)").
    for (const format of ["esm", "cjs"]) {
      const source = read("@effect/ai-anthropic", `dist/${format}/AnthropicLanguageModel.js`)
      expect(source).toContain("unparsedToolCall = parsed.left")
      expect(source).toMatch(/unparsedToolCall !== undefined && finishReason !== "content-filter"/)
    }
  })

  it("both clients read a stream to the body's end, not only to the last event (both module formats)", () => {
    // Its behaviour: `test/integration/connections.test.ts` (no stream cut short, its connection kept).
    for (
      const [name, file] of [["@effect/ai-openai", "OpenAiClient"], [
        "@effect/ai-anthropic",
        "AnthropicClient"
      ]] as const
    ) {
      for (const format of ["esm", "cjs"]) {
        const source = read(name, `dist/${format}/${file}.js`)
        expect(source).not.toContain("Stream.takeUntil(")
        expect(source).toMatch(/let ended = false;\s*return streamRequest\(request, \w+\)\.pipe\(Stream\.filter\(/)
      }
    }
  })

  it.effect("@effect/ai-anthropic reads the stop reason model_context_window_exceeded, as an answer stopped at a limit", () =>
    Effect.gen(function*() {
      // Sent by default by Claude Sonnet 4.5 and later when the answer fills the context window. Before, the event
      // did not decode: the stream ended without its finish (or, not streamed, the response failed as malformed).
      const model = yield* AnthropicLanguageModel.make({ model: "claude-sonnet-4-5" })
      const parts = yield* LanguageModel.streamText({ prompt: "Go on." }).pipe(
        Stream.runCollect,
        Effect.provideService(LanguageModel.LanguageModel, model)
      )
      const finish = [...parts].find((part) => part.type === "finish")
      expect(finish?.type === "finish" && finish.reason).toBe("length")
    }).pipe(
      Effect.provide(AnthropicClient.layer({})),
      Effect.provideService(HttpClient.HttpClient, replying(sseOf(answerAtTheWindow)))
    ))

  it("@effect/ai-anthropic takes any error type in a stream's error event", () => {
    for (const format of ["esm", "cjs"]) {
      expect(read("@effect/ai-anthropic", `dist/${format}/AnthropicClient.js`)).not.toContain(
        "\"request_too_large\", \"rate_limit_error\", \"api_error\", \"overloaded_error\")"
      )
    }
  })

  it("@effect/experimental's Redis rate limiter store bounds its QUIT and listens for errors (both module formats)", () => {
    for (const format of ["esm", "cjs"]) {
      const source = read("@effect/experimental", `dist/${format}/RateLimiter/Redis.js`)
      expect(source).not.toContain("Effect.promise(() => redis.quit())")
      expect(source).toContain("redis.disconnect();")
      expect(source).toContain(`redis.on("error", () => {});`)
    }
  })

  it("@effect/experimental's SSE parser finds each line's end and separator once, by indexOf (both module formats)", () => {
    for (const format of ["esm", "cjs"]) {
      const source = read("@effect/experimental", `dist/${format}/Sse.js`)
      expect(source).toContain("const from = Math.max(startingPosition, position);")
      expect(source).toContain("const nextLf = buffer.indexOf(\"\\n\", from);")
      expect(source).not.toContain("character = buffer[index];")
    }
  })

  it("@effect/experimental's SSE channel is a loop over its input, without a mailbox (both module formats)", () => {
    for (const format of ["esm", "cjs"]) {
      const source = read("@effect/experimental", `dist/${format}/Sse.js`)
      expect(source).toContain("const loop = Channel.readWithCause({")
      expect(source).not.toContain("Channel.embedInput(Mailbox.toChannel(mailbox), input)")
    }
  })

  it.effect("@effect/experimental's SSE channel hands on the events of each piece of input as one chunk", () =>
    Effect.gen(function*() {
      const text = sseText(40)
      // Each piece a chunk of the input, as a network chunk is.
      const through = (pieces: ReadonlyArray<string>) =>
        Stream.fromChunks(...pieces.map((piece) => Chunk.of(piece))).pipe(
          Stream.pipeThroughChannel(Sse.makeChannel()),
          Stream.chunks,
          Stream.map((chunk) => Chunk.toReadonlyArray(chunk).map((event) => event.data)),
          Stream.runCollect,
          Effect.map(Chunk.toReadonlyArray)
        )
      const whole = yield* through([text])
      // Unpatched: pieces of 16 events (the mailbox's capacity), each handed over by another fiber.
      expect(whole.map((events) => events.length)).toEqual([40])
      const half = text.length / 2 + 100
      const split = yield* through([text.slice(0, half), text.slice(half)])
      expect(split.flat()).toEqual(whole[0])
      expect(split).toHaveLength(2)
      // An event too large ends the stream with a defect, after the events before it.
      const tooLarge = yield* Stream.make(`data: a\n\ndata: ${"x".repeat(50)}`).pipe(
        Stream.pipeThroughChannel(Sse.makeChannel({ maxEventSize: 20 })),
        Stream.runCollect,
        Effect.exit
      )
      expect(Exit.isFailure(tooLarge) && Cause.isDie(tooLarge.cause)).toBe(true)
    }))

  it("@effect/experimental's SSE parser reads a stream in one piece as fast as in small pieces", () => {
    // 350 events, 154 KB: unpatched, the parse in one piece rescanned the buffer from its start for every line
    // (about 60x the time in 1 KB pieces, growing with the size); linear, both take about a millisecond.
    const text = sseText(350)
    const best = (size: number) => {
      const runs = Array.from({ length: 9 }, () => parse(text, size))
      return { events: runs[0]!.events, millis: Math.min(...runs.map((run) => run.millis)) }
    }
    const whole = best(text.length)
    const pieces = best(1_024)
    expect(whole.events).toHaveLength(350)
    expect(pieces.events).toEqual(whole.events)
    expect(whole.millis / Math.max(pieces.millis, 0.2)).toBeLessThan(5)
  })

  it("@effect/experimental's SSE parser reads lines ended by CRLF, split anywhere, as lines ended by LF", () => {
    const lf = parse(sseText(50), 1_000_000).events
    for (const size of [1, 7, 450, 1_000_000]) expect(parse(sseText(50, "\r\n"), size).events).toEqual(lf)
  })

  it("@effect/experimental's SSE parser reads every line ending and field shape alike, whole or split anywhere", () => {
    // CR, LF and CRLF endings; a comment, a field without a value, a colon in a value, an unknown field, an id and
    // an event name that last one event, a multi-line data, a retry.
    const text = ": comment\r\nevent: a\rid: 7\ndata: x: y\r\n\r\ndata\ndata:two\nfoo: bar\n\n" +
      "retry: 250\n\nevent: b\r\ndata: {\"k\":\"v\"}\n\n"
    const expected = [
      { _tag: "Event", id: "7", event: "a", data: "x: y" },
      { _tag: "Event", id: undefined, event: "message", data: "\ntwo" },
      { _tag: "Retry", millis: 250, lastEventId: "7" },
      { _tag: "Event", id: undefined, event: "b", data: "{\"k\":\"v\"}" }
    ]
    const read = (size: number) => {
      const seen: Array<unknown> = []
      const parser = Sse.makeParser((event) =>
        seen.push(
          event._tag === "Event"
            ? { _tag: "Event", id: event.id, event: event.event, data: event.data }
            : { _tag: "Retry", millis: Duration.toMillis(event.duration), lastEventId: event.lastEventId }
        )
      )
      for (let start = 0; start < text.length; start += size) {
        expect(parser.feed(text.slice(start, start + size))).toBeUndefined()
      }
      return seen
    }
    for (let size = 1; size <= text.length; size++) expect(read(size)).toEqual(expected)
  })

  it("the clients decode a stream's events by type, a chunk at a time (both module formats)", () => {
    for (const format of ["esm", "cjs"]) {
      for (
        const [name, file] of [["@effect/ai-openai", "OpenAiClient"], [
          "@effect/ai-anthropic",
          "AnthropicClient"
        ]] as const
      ) {
        const source = read(name, `dist/${format}/${file}.js`)
        expect(source).toContain("const fastDecode = eventDecoderOf(schema);")
        expect(source).toContain("byType.set(literals[0], handDecoderOf(member) ?? schemaDecoderOf(member));")
        // Whole messages and responses by hand too: classes within classes, unions, arrays, optionalWith.
        expect(source).toContain("const memberCheckOf = (union, members) => {")
        expect(source).toContain("const out = decode(option);")
        // The union's own decoder, for events the fast path cannot decode, is made once per schema when first
        // needed, not on every call.
        expect(source).not.toMatch(/const decodeEvents? = Schema\.decode\(/)
      }
      expect(read("@effect/ai-anthropic", `dist/${format}/AnthropicClient.js`)).toContain(
        "return chunkDecoderOf(schema)(Chunk.map(chunk, event => event.data));"
      )
      expect(read("@effect/ai-openai", `dist/${format}/OpenAiClient.js`)).toContain("=> slowDecoderOf(schema)(data)")
      for (
        const [name, file] of [["@effect/ai-openai", "OpenAiLanguageModel"], [
          "@effect/ai-anthropic",
          "AnthropicLanguageModel"
        ]]
      ) {
        const source = read(name, `dist/${format}/${file}.js`)
        expect(source).not.toContain("Stream.mapEffect(Effect.fnUntraced(function* (event)")
        expect(source).toContain("const deltaParts = (event, parts) => {")
        expect(source).toContain("return stream.pipe(Stream.mapChunksEffect(partsOfChunk));")
      }
      const ai = read("@effect/ai", `dist/${format}/LanguageModel.js`)
      expect(ai.match(/Stream\.mapChunksEffect\(streamChunkDecoder\(schema\)\)/g)?.length).toBe(3)
      expect(ai).toContain("const decode = objectDecoder(ResultSchema);")
    }
  })

  it.effect("@effect/ai makes a stream's deltas as its schema decodes them", () =>
    Effect.gen(function*() {
      const encoded: Array<Response.StreamPartEncoded> = [
        { type: "response-metadata", id: "r", modelId: "m" },
        { type: "text-delta", id: "t", delta: "Ma" },
        { type: "tool-params-delta", id: "c", delta: "{\"a\"" },
        { type: "reasoning-delta", id: "r", delta: "hm", metadata: { openai: { itemId: "i" } } },
        { type: "text-delta", id: "t", delta: "ra" }
      ]
      const model = yield* LanguageModel.make({
        generateText: () => Effect.succeed([]),
        streamText: () => Stream.fromIterable(encoded)
      })
      const parts = yield* Stream.runCollect(model.streamText({ prompt: "hi" }))
      const decode = Schema.decodeUnknownSync(Response.StreamPart(Toolkit.empty))
      expect([...parts]).toEqual(encoded.map((part) => decode(part)))
    }))

  it.effect("@effect/ai hands a streamed call's id generator to the provider, and provides nothing to the stream", () =>
    Effect.gen(function*() {
      let handed: LanguageModel.ProviderOptions["idGenerator"]
      const inStream: Array<boolean> = []
      const model = yield* LanguageModel.make({
        generateText: () => Effect.succeed([]),
        streamText: (options) => {
          handed = options.idGenerator
          // What every effect of the stream sees: provided to the stream, the generator was provided anew to each.
          return Stream.make<Array<Response.StreamPartEncoded>>(
            { type: "text-delta", id: "t", delta: "Ma" },
            { type: "text-delta", id: "t", delta: "ra" }
          ).pipe(
            Stream.tap(() =>
              Effect.map(Effect.serviceOption(IdGenerator.IdGenerator), (found) => inStream.push(found._tag === "Some"))
            )
          )
        }
      })
      yield* Stream.runDrain(model.streamText({ prompt: "hi" }))
      expect(handed).toBe(IdGenerator.defaultIdGenerator)
      expect(inStream).toEqual([false, false])
      for (const format of ["esm", "cjs"]) {
        expect(read("@effect/ai", `dist/${format}/LanguageModel.js`)).not.toMatch(/Stream\.provideService\(/)
        expect(read("@effect/ai-anthropic", `dist/${format}/AnthropicLanguageModel.js`)).toContain(
          "const idGenerator = options.idGenerator ?? (yield* IdGenerator.IdGenerator);"
        )
        expect(read("@effect/ai-openai", `dist/${format}/OpenAiLanguageModel.js`)).toContain(
          "const idGenerator = options.idGenerator ?? (yield* IdGenerator.IdGenerator);"
        )
      }
    }))

  it.effect("the clients make a stream's events as the event union decodes them, deltas by hand", () =>
    Effect.gen(function*() {
      // Each event as its own SSE frame; the client must give what the union's schema gives for each, class and all.
      const anthropicEvents = [
        { type: "content_block_start", index: 0, content_block: { type: "tool_use", id: "t", name: "f", input: {} } },
        { type: "content_block_delta", index: 0, delta: { type: "input_json_delta", partial_json: "{\"a\"" } },
        { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "Mara", extra: 1 } },
        { type: "content_block_delta", index: 1, delta: { type: "thinking_delta", thinking: "hm" } },
        { type: "ping" },
        { type: "content_block_stop", index: 0 }
      ]
      const anthropicParts = Either.getOrThrow(
        yield* streamedBy("anthropic", AnthropicClient.MessageStreamEvent, anthropicEvents)
      )
      const decodeAnthropic = Schema.decodeUnknownSync(AnthropicClient.MessageStreamEvent)
      expect([...anthropicParts]).toStrictEqual(anthropicEvents.map((event) => decodeAnthropic(event)))
      expect([...anthropicParts][1]).toBeInstanceOf(AnthropicClient.ContentBlockDeltaEvent)

      const openaiEvents = [
        {
          type: "response.function_call_arguments.delta",
          sequence_number: 3,
          output_index: 0,
          item_id: "fc",
          delta: "{"
        },
        {
          type: "response.output_text.delta",
          sequence_number: 4,
          output_index: 1,
          content_index: 0,
          item_id: "m",
          delta: "Ma",
          logprobs: []
        },
        {
          type: "response.output_text.delta",
          sequence_number: 5,
          output_index: 1,
          content_index: 0,
          item_id: "m",
          delta: "ra"
        },
        // Not an integer: the schema's decode (which skips it), not the hand's.
        {
          type: "response.function_call_arguments.delta",
          sequence_number: 6.5,
          output_index: 0,
          item_id: "fc",
          delta: "}"
        }
      ]
      const openaiParts = Either.getOrThrow(yield* streamedBy("openai", OpenAiClient.ResponseStreamEvent, openaiEvents))
      const decodeOpenAi = Schema.decodeUnknownSync(OpenAiClient.ResponseStreamEvent)
      expect([...openaiParts]).toStrictEqual(openaiEvents.slice(0, 3).map((event) => decodeOpenAi(event)))
    }).pipe(Effect.scoped))
  it.effect("the clients make whole messages and responses as the event union decodes them, valid or not", () =>
    Effect.gen(function*() {
      // The events that carry a whole message or response, as production sends them, and variants of each: a field
      // dropped, nulled or given a value of another kind. Each variant alone in a stream: what the client makes of
      // it must be what the union's schema makes (class and all), and one the schema rejects must fail the stream as
      // before (Anthropic) or be skipped (OpenAI).
      const through = (provider: "anthropic" | "openai", event: unknown) =>
        provider === "anthropic"
          ? streamedBy("anthropic", AnthropicClient.MessageStreamEvent, [event])
          : streamedBy("openai", OpenAiClient.ResponseStreamEvent, [event])
      const decode = {
        anthropic: Schema.decodeUnknownEither(AnthropicClient.MessageStreamEvent),
        openai: Schema.decodeUnknownEither(OpenAiClient.ResponseStreamEvent)
      }
      let accepted = 0
      let rejected = 0
      for (const [provider, events] of [["anthropic", wholeAnthropicEvents], ["openai", wholeOpenAiEvents]] as const) {
        for (const event of events) {
          for (const variant of [event, ...variantsOf(event)]) {
            const expected = decode[provider](variant)
            const made = yield* through(provider, variant)
            if (expected._tag === "Right") {
              accepted++
              expect(Either.getOrThrow(made)).toStrictEqual([expected.right])
            } else {
              rejected++
              if (provider === "anthropic") expect(Either.isLeft(made)).toBe(true)
              else expect(Either.getOrThrow(made)).toStrictEqual([])
            }
          }
        }
      }
      // Both kinds of variant were met.
      expect(accepted).toBeGreaterThan(50)
      expect(rejected).toBeGreaterThan(50)
    }).pipe(Effect.scoped))
  it.effect("the clients decode by hand only what their schema decodes the same: unions within unions, absent keys, defaults, nulls, constructors", () =>
    Effect.gen(function*() {
      // Shapes that the providers' schemas do not hold today, each in an event of a union of its own, through the
      // client's own decoding: each variant must come out as the union's schema makes it, or fail as it fails.
      class Text extends Schema.Class<Text>("Text")({ type: Schema.Literal("text"), text: Schema.String }) {}
      class Image extends Schema.Class<Image>("Image")({ type: Schema.Literal("image"), url: Schema.String }) {}
      class Nested extends Schema.Class<Nested>("Nested")({
        type: Schema.Literal("nested"),
        // The inner union is one member, tried after the record: a text part is a record here.
        part: Schema.Union(Schema.Record({ key: Schema.String, value: Schema.Unknown }), Schema.Union(Text, Image))
      }) {}
      class Loose extends Schema.Class<Loose>("Loose")({
        type: Schema.Literal("loose"),
        // Absent, an unknown is read as undefined; an empty struct takes any value but null.
        data: Schema.Unknown,
        shape: Schema.Struct({})
      }) {}
      class Defaulted extends Schema.Class<Defaulted>("Defaulted")({
        type: Schema.Literal("defaulted"),
        // A default its own type refuses.
        code: Schema.optionalWith(Schema.String.pipe(Schema.minLength(3)), { default: () => "" })
      }) {}
      class Nulls extends Schema.Class<Nulls>("Nulls")({
        type: Schema.Literal("nulls"),
        // A null the value's own schema reads before the null of `nullable` does.
        note: Schema.optionalWith(
          Schema.transform(Schema.NullOr(Schema.String), Schema.String, {
            decode: (value) => value ?? "was null",
            encode: (value) => value
          }),
          { nullable: true }
        )
      }) {}
      class Marked extends Schema.Class<Marked>("Marked")({ type: Schema.Literal("marked"), name: Schema.String }) {
        declare readonly marked: boolean
        constructor(props: { readonly type: "marked"; readonly name: string }, options?: Schema.MakeOptions) {
          super(props, options)
          // Set only for some inputs: an empty instance does not show it.
          if (props.name === "x") (this as { marked: boolean }).marked = true
        }
      }
      const Events = Schema.Union(Nested, Loose, Defaulted, Nulls, Marked)
      const decode = Schema.decodeUnknownEither(Events)
      const variants = [
        { type: "nested", part: { type: "text", text: "Mara" } },
        { type: "nested", part: { type: "image", url: 1 } },
        { type: "nested", part: "text" },
        { type: "loose", shape: 1 },
        { type: "loose", data: [1], shape: {} },
        { type: "loose", data: 1, shape: null },
        { type: "defaulted" },
        { type: "defaulted", code: "abc" },
        { type: "nulls", note: null },
        { type: "nulls" },
        { type: "nulls", note: "kept" },
        { type: "marked", name: "x" },
        { type: "marked", name: "y" }
      ]
      for (const variant of variants) {
        const expected = decode(variant)
        const made = yield* streamedBy("anthropic", Events, [variant])
        if (expected._tag === "Right") expect(Either.getOrThrow(made)).toStrictEqual([expected.right])
        else expect(Either.isLeft(made)).toBe(true)
      }
      // The cases are the ones meant: both outcomes met.
      expect(variants.filter((variant) => Either.isRight(decode(variant))).length).toBe(10)
    }).pipe(Effect.scoped))
})
