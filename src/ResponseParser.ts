/**
 * Turns what a model sent into a validated `Domain.PlotOutline`, readable text and warnings. It accepts a decoded
 * object (structured output) or text with JSON inside (alone, in a code fence, or with prose around it), and
 * rejects with `Errors.ResponseParseError` what cannot be read, however large or hostile.
 *
 * @since 0.1.0
 */
import * as Tool from "@effect/ai/Tool"
import type * as Toolkit from "@effect/ai/Toolkit"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Domain from "./Domain.js"
import * as Errors from "./Errors.js"
import * as Json from "./internal/json.js"
import * as Validation from "./internal/validation.js"
import * as PromptBuilder from "./PromptBuilder.js"

/**
 * The longest reply read; an outline is a few kilobytes, so anything past this is not one.
 *
 * @since 0.1.0
 * @category Limits
 */
export const maxReplyLength = 512 * 1024

/**
 * A parsed reply.
 *
 * @since 0.1.0
 * @category Models
 */
export interface ParsedPlot {
  readonly outline: Domain.PlotOutline
  /** The outline as Markdown, for a person to read. */
  readonly content: string
  readonly wordCount: number
  readonly warnings: ReadonlyArray<string>
}

const excerptOf = (text: string) => text.slice(0, 200)

const fail = (reason: string, text: string) =>
  Either.left(new Errors.ResponseParseError({ reason, excerpt: excerptOf(text) }))

/**
 * Finds the JSON object in a reply: the whole text, else a fenced code block, else the first balanced
 * `{...}` in the prose that parses.
 *
 * @since 0.1.0
 * @category Parsing
 */
export const extractJson = (text: string): Either.Either<unknown, Errors.ResponseParseError> => {
  if (text.length > maxReplyLength) return fail(`the reply is longer than ${maxReplyLength} characters`, text)
  const whole = parseObject(text.trim())
  if (whole !== undefined) return Either.right(whole)
  for (const [, fenced] of text.matchAll(/```(?:json|JSON)?[ \t]*\n?([\s\S]*?)```/g)) {
    const parsed = parseObject(fenced!.trim())
    if (parsed !== undefined) return Either.right(parsed)
  }
  const embedded = firstEmbeddedObject(text)
  return embedded === undefined ? fail("no JSON object found in the reply", text) : Either.right(embedded)
}

const parseObject = (candidate: string): unknown => {
  if (!candidate.startsWith("{")) return undefined
  try {
    return JSON.parse(candidate)
  } catch {
    return undefined
  }
}

/** How many `{` a reply may open before the parser stops looking for an object in its prose. */
const maxObjectStarts = 16

/**
 * The first balanced `{...}` in prose that parses as JSON. The scan is string-aware (braces inside strings
 * do not count) and tries a bounded number of starts, so hostile text costs linear time.
 */
const firstEmbeddedObject = (text: string): unknown => {
  let start = text.indexOf("{")
  for (let attempt = 0; start !== -1 && attempt < maxObjectStarts; attempt++) {
    const end = Json.closingIndex(text, start)
    // An object that never closes will not close from a later start either.
    if (end === -1) return undefined
    const parsed = parseObject(text.slice(start, end + 1))
    if (parsed !== undefined) return parsed
    start = text.indexOf("{", start + 1)
  }
  return undefined
}

const decodeOutline = Schema.decodeUnknownEither(Domain.PlotOutline, { onExcessProperty: "ignore" })

/** An outline nests four levels deep; hostile JSON nested thousands deep must not reach recursive code. */
const maxNesting = 32

/** Whether a parsed JSON value nests deeper than `max`, found without recursion. */
const nestedDeeperThan = (value: unknown, max: number): boolean => {
  const stack: Array<readonly [unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!
    if (typeof current !== "object" || current === null) continue
    if (depth >= max) return true
    for (const child of Object.values(current)) stack.push([child, depth + 1])
  }
  return false
}

/**
 * Validates a decoded value as a `Domain.PlotOutline`.
 *
 * @since 0.1.0
 * @category Parsing
 */
export const validateOutline = (
  value: unknown,
  raw: string
): Either.Either<Domain.PlotOutline, Errors.ResponseParseError> => {
  const outline = outlineAsWritten(value)
  if (outline !== undefined) return Either.right(outline)
  return nestedDeeperThan(value, maxNesting)
    ? fail(`the reply nests deeper than ${maxNesting} levels`, raw)
    : Either.mapLeft(decodeOutline(value), (error) => {
      const first = ParseResult.ArrayFormatter.formatIssueSync(Validation.withShortActuals(error.issue))[0]
      const reason = first === undefined
        ? "invalid outline"
        : `${Validation.formatPath(first.path, "outline")}: ${first.message}`
      return new Errors.ResponseParseError({ reason, excerpt: excerptOf(raw) })
    })
}

/**
 * The outline, when the reply is one as it stands (every text within its bounds once trimmed, every list within
 * its counts), made without Schema's decoder, which cost a tenth of a generation; `undefined` for anything else,
 * which the decoder then reads and, when it is wrong, says why. What it accepts, it reads as the decoder does: the
 * texts trimmed, other fields ignored (the tests pin the two to each other). It reads only the outline's own
 * fields, four levels deep, so hostile nesting elsewhere never reaches it.
 */
const outlineAsWritten = (value: unknown): Domain.PlotOutline | undefined => {
  const limits = Domain.OutlineLimits
  if (!Predicate.isRecord(value) || !Array.isArray(value.acts)) return undefined
  const title = Validation.trimmedWithin(value.title, limits.title)
  const logline = Validation.trimmedWithin(value.logline, limits.logline)
  if (title === undefined || logline === undefined) return undefined
  if (value.acts.length < 1 || value.acts.length > limits.acts) return undefined
  const acts: Array<Domain.PlotAct> = []
  for (const act of value.acts as ReadonlyArray<unknown>) {
    if (
      !Predicate.isRecord(act) || !Array.isArray(act.beats) || act.beats.length < 1 || act.beats.length > limits.beats
    ) {
      return undefined
    }
    const actTitle = Validation.trimmedWithin(act.title, limits.actTitle)
    const summary = Validation.trimmedWithin(act.summary, limits.actSummary)
    if (actTitle === undefined || summary === undefined) return undefined
    const beats: Array<Domain.PlotBeat> = []
    for (const beat of act.beats as ReadonlyArray<unknown>) {
      if (!Predicate.isRecord(beat) || !Array.isArray(beat.characters) || beat.characters.length > limits.characters) {
        return undefined
      }
      const beatSummary = Validation.trimmedWithin(beat.summary, limits.beatSummary)
      const location = beat.location
      if (beatSummary === undefined || typeof location !== "string" || location.length > limits.location) {
        return undefined
      }
      const characters: Array<string> = []
      for (const name of beat.characters as ReadonlyArray<unknown>) {
        const trimmed = Validation.trimmedWithin(name, limits.character)
        if (trimmed === undefined) return undefined
        characters.push(trimmed)
      }
      beats.push(new Domain.PlotBeat({ summary: beatSummary, characters, location }, true))
    }
    acts.push(new Domain.PlotAct({ title: actTitle, summary, beats }, true))
  }
  return new Domain.PlotOutline({ title, logline, acts }, true)
}

const outlineDescription = Tool.getDescriptionFromSchemaAst(Domain.PlotOutline.ast) ?? "A plot outline"

/**
 * The tool whose call is the outline: every call forces it (`toolChoice: { tool: "plot_outline" }`), streamed or
 * not, with `Domain.PlotOutline`'s JSON Schema (OpenAI enforces it, a strict function call; Anthropic's forced tool
 * use follows it without enforcing it). Its JSON Schema is computed once; its parameters pass through as they are and are
 * validated by `validateOutline` (one decoder compiled once, with the nesting guard): a schema rebuilt and a decoder
 * compiled per call cost a third of a generation's CPU.
 *
 * @since 0.1.0
 * @category Parsing
 */
export const outlineTool = Tool.make("plot_outline", { description: outlineDescription }).setParameters(
  Schema.Struct({}, Schema.Record({ key: Schema.String, value: Schema.Unknown })).annotations({
    jsonSchema: Tool.getJsonSchemaFromSchemaAst(Domain.PlotOutline.ast),
    description: outlineDescription
  })
)

/**
 * The toolkit of a structured call: the outline tool alone. Its call is never run (calls disable tool call
 * resolution: the call's parameters are the result), so its handler only dies.
 *
 * @since 0.1.0
 * @category Parsing
 */
export const outlineToolkit: Toolkit.WithHandler<{ readonly plot_outline: typeof outlineTool }> = {
  tools: { plot_outline: outlineTool },
  handle: () => Effect.dieMessage("the outline tool is never run")
}

/**
 * Renders an outline as Markdown: its heading, then each act with its beats, each act headed as the kind reads it
 * (`actLabel`). The pieces (`renderHeading`, `renderAct`, `renderBeat`) are what a stream shows as each part of the
 * outline completes; joined, they are this.
 *
 * @since 0.1.0
 * @category Rendering
 */
export const render = (outline: Domain.PlotOutline, kind: Domain.ContentKind = "outline"): string => {
  let out = renderHeading(outline.title, outline.logline)
  outline.acts.forEach((act, index) => {
    out += renderAct(index + 1, act.title, act.summary, kind)
    for (const beat of act.beats) out += renderBeat(beat)
  })
  return out
}

/**
 * The Markdown of an outline's title and logline.
 *
 * @since 0.1.0
 * @category Rendering
 */
export const renderHeading = (title: string, logline: string): string => `# ${title}\n\n*${logline}*`

/**
 * What an act is to the reader of a kind of content: an outline's "Act 2", a scene's "Scene" (scene beats are one
 * act, the scene), a suggestion's "Option 2" (each act is one alternative). It depends on the act's number alone,
 * not on how many acts there are, so that a stream can head an act before the rest is written.
 *
 * @since 0.1.0
 * @category Rendering
 */
export const actLabel = (act: number, kind: Domain.ContentKind = "outline"): string => {
  switch (kind) {
    case "outline":
      return `Act ${act}`
    case "scene_beats":
      return "Scene"
    case "suggestions":
      return `Option ${act}`
  }
}

/**
 * The Markdown of an act's heading and summary (numbered from 1), as it follows what came before.
 *
 * @since 0.1.0
 * @category Rendering
 */
export const renderAct = (
  act: number,
  title: string,
  summary: string,
  kind: Domain.ContentKind = "outline"
): string => `\n\n## ${actLabel(act, kind)}: ${title}\n\n${summary}\n`

/**
 * The Markdown line of a beat, as it follows its act or the beat before.
 *
 * @since 0.1.0
 * @category Rendering
 */
export const renderBeat = (
  beat: { readonly summary: string; readonly characters: ReadonlyArray<string>; readonly location: string }
): string => {
  const where = beat.location.trim() === "" ? "" : ` (${beat.location})`
  const who = beat.characters.length === 0 ? "" : ` [${beat.characters.join(", ")}]`
  return `\n- ${beat.summary}${where}${who}`
}

/**
 * The number of words in a text.
 *
 * @since 0.1.0
 * @category Rendering
 */
export const countWords = (text: string): number => {
  // A scan rather than a regex match: it runs on every result and allocates nothing.
  let count = 0
  let inWord = false
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    let letterOrDigit: boolean
    if (code < 128) {
      letterOrDigit = (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122)
    } else if (code >= 0x2000 && code <= 0x206f) {
      // General punctuation (dashes, curly quotes, ellipses), common in prose: never a letter.
      letterOrDigit = false
    } else if (code >= 0xc0 && code <= 0x24f && code !== 0xd7 && code !== 0xf7) {
      // Accented Latin letters.
      letterOrDigit = true
    } else {
      const point = text.codePointAt(i)!
      letterOrDigit = letterOrDigitPattern.test(String.fromCodePoint(point))
      if (point > 0xffff) i++
    }
    if (letterOrDigit) {
      if (!inWord) count++
      inWord = true
    } else if (!(inWord && (code === 39 || code === 0x2019 || code === 45))) {
      inWord = false
    }
  }
  return count
}

/** A letter or a digit in any script: a word starts with one and goes on with them, apostrophes and hyphens. */
const letterOrDigitPattern = /^[\p{L}\p{N}]$/u

/**
 * How far from the target word count a result may be before it is worth a warning (either way).
 *
 * @since 0.1.0
 * @category Quality
 */
export const wordCountTolerance = 0.5

/** The main characters: the first few, who a plot about this project is expected to name. */
const mainCharacterCount = 3

/**
 * Quality shortfalls of an outline as warnings: a word count far from the target, main characters that do not
 * appear, beats that name characters the project does not know.
 *
 * @since 0.1.0
 * @category Quality
 */
export const qualityWarnings = (
  outline: Domain.PlotOutline,
  wordCount: number,
  request: Domain.PlotRequest,
  context: Domain.ProjectContext,
  content: string = render(outline, request.kind)
): Array<string> => {
  const warnings: Array<string> = []
  const target = PromptBuilder.targetWords(request)
  if (Math.abs(wordCount - target) > target * wordCountTolerance) {
    warnings.push(`The result has ${wordCount} words, far from the ${target} asked for.`)
  }
  const text = content.toLowerCase()
  const missing = context.characters.slice(0, mainCharacterCount).filter((c) => !text.includes(c.name.toLowerCase()))
  if (missing.length > 0) {
    warnings.push(`The result does not mention ${missing.map((c) => c.name).join(", ")}.`)
  }
  if (context.characters.length > 0) {
    const known = context.characters.map((c) => c.name.toLowerCase())
    const unknown = new Set(
      outline.acts.flatMap((act) => act.beats.flatMap((beat) => beat.characters)).filter((name) => {
        const lower = name.toLowerCase()
        return !known.some((k) => k.includes(lower) || lower.includes(k))
      })
    )
    if (unknown.size > 0) {
      warnings.push(
        `The result introduces characters the project does not have: ${[...unknown].slice(0, 5).join(", ")}.`
      )
    }
  }
  return warnings
}

const finish = (
  outline: Domain.PlotOutline,
  request: Domain.PlotRequest,
  context: Domain.ProjectContext
): ParsedPlot => {
  const content = render(outline, request.kind)
  const wordCount = countWords(content)
  return { outline, content, wordCount, warnings: qualityWarnings(outline, wordCount, request, context, content) }
}

/**
 * Parses a text reply that should hold a `Domain.PlotOutline` as JSON.
 *
 * @since 0.1.0
 * @category Parsing
 */
export const parseText = (
  text: string,
  request: Domain.PlotRequest,
  context: Domain.ProjectContext
): Either.Either<ParsedPlot, Errors.ResponseParseError> =>
  extractJson(text).pipe(
    Either.flatMap((value) => validateOutline(value, text)),
    Either.map((outline) => finish(outline, request, context))
  )

/**
 * Validates the object a structured call returned (the outline tool's parameters); `raw` is the reply's text,
 * for the excerpt of an error.
 *
 * @since 0.1.0
 * @category Parsing
 */
export const parseStructured = (
  value: unknown,
  raw: string,
  request: Domain.PlotRequest,
  context: Domain.ProjectContext
): Either.Either<ParsedPlot, Errors.ResponseParseError> =>
  Either.map(validateOutline(value, raw), (outline) => finish(outline, request, context))

/**
 * Takes an outline already validated (the template's).
 *
 * @since 0.1.0
 * @category Parsing
 */
export const fromOutline = (
  outline: Domain.PlotOutline,
  request: Domain.PlotRequest,
  context: Domain.ProjectContext
): ParsedPlot => finish(outline, request, context)
