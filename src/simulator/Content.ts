/**
 * The simulator's writer: plausible plot text and JSON built from the characters, places and threads named
 * in a prompt, deterministic for a given prompt and seed. Where the request carries a JSON schema, the output
 * conforms to it.
 *
 * @since 0.1.0
 */
import * as o200k from "gpt-tokenizer/encoding/o200k_base"
import * as Json from "../internal/json.js"

// =============================================================================
// Randomness
// =============================================================================

/** FNV-1a over a string: a stable 32-bit seed. */
export const hash = (text: string, seed = 0x811c9dc5): number => {
  let h = seed >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * mulberry32: a small, fast, seedable generator of numbers in [0, 1).
 *
 * @since 0.1.0
 */
export const generator = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// =============================================================================
// What the prompt names
// =============================================================================

/**
 * The people, places and threads a prompt names.
 *
 * @since 0.1.0
 */
export interface Cast {
  readonly characters: ReadonlyArray<string>
  readonly places: ReadonlyArray<string>
  readonly threads: ReadonlyArray<string>
}

/** The text of the JSON array that follows `"key": [`, or undefined. */
const arrayAfterKey = (text: string, keys: ReadonlyArray<string>): string | undefined => {
  for (const key of keys) {
    const match = new RegExp(`"${key}"\\s*:\\s*\\[`).exec(text)
    if (match === null) continue
    const start = match.index + match[0].length - 1
    const end = Json.closingIndex(text, start)
    if (end !== -1) return text.slice(start, end + 1)
  }
  return undefined
}

const unescapeJsonString = (raw: string): string => {
  try {
    return JSON.parse(`"${raw}"`) as string
  } catch {
    return raw
  }
}

const fieldValues = (segment: string | undefined, field: string, limit: number): Array<string> => {
  if (segment === undefined) return []
  const out: Array<string> = []
  for (const match of segment.matchAll(new RegExp(`"${field}"\\s*:\\s*"((?:[^"\\\\]|\\\\.){1,160})"`, "g"))) {
    const value = unescapeJsonString(match[1]!).trim()
    if (value !== "" && !out.includes(value)) out.push(value)
    if (out.length >= limit) break
  }
  return out
}

const stopWords = new Set([
  "The",
  "A",
  "An",
  "And",
  "But",
  "Or",
  "In",
  "On",
  "At",
  "To",
  "Of",
  "For",
  "With",
  "From",
  "By",
  "As",
  "It",
  "He",
  "She",
  "They",
  "We",
  "You",
  "I",
  "This",
  "That",
  "These",
  "Those",
  "When",
  "While",
  "After",
  "Before",
  "Write",
  "Respond",
  "Use",
  "Never",
  "Keep",
  "JSON",
  "Schema",
  "Both",
  "Their",
  "His",
  "Her",
  "Act",
  "Chapter",
  "What",
  "How"
])

/** Capitalised phrases, for prompts that carry no structured project data. */
const properNouns = (text: string, limit: number): Array<string> => {
  const out: Array<string> = []
  for (const match of text.matchAll(/\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b/g)) {
    const words = match[1]!.split(/\s+/).filter((w) => !stopWords.has(w))
    const phrase = words.join(" ")
    if (phrase.length > 2 && !out.includes(phrase)) out.push(phrase)
    if (out.length >= limit) break
  }
  return out
}

/**
 * Reads the cast out of a prompt: JSON arrays named like characters, locations and plot threads when the
 * prompt carries project data, else its capitalised names.
 *
 * @since 0.1.0
 */
export const castOf = (prompt: string): Cast => {
  const characters = fieldValues(arrayAfterKey(prompt, ["characters", "cast"]), "name", 12)
  const places = fieldValues(arrayAfterKey(prompt, ["locations", "places", "settings"]), "name", 12)
  const threads = fieldValues(arrayAfterKey(prompt, ["plotThreads", "threads", "plot_threads"]), "title", 8)
  const nouns = characters.length === 0 || places.length === 0 ? properNouns(prompt, 8) : []
  return {
    characters: characters.length > 0
      ? characters
      : nouns.length > 0
      ? nouns.slice(0, 4)
      : ["the narrator", "a stranger"],
    places: places.length > 0
      ? places
      : nouns.length > 4
      ? nouns.slice(4)
      : ["the old town", "the harbour", "the road north"],
    threads: threads.length > 0 ? threads : ["the secret at the heart of the story"]
  }
}

// =============================================================================
// Sentences
// =============================================================================

const beatTemplates: ReadonlyArray<string> = [
  "{a} arrives at {p} and finds the first sign that {t} is not what it seemed.",
  "At {p}, {a} confronts {b}, and neither leaves the argument unchanged.",
  "{b} offers {a} a bargain that would settle {t}, at a price {a} cannot yet see.",
  "{a} follows a rumour to {p}, where {b} is waiting with a warning.",
  "A storm traps {a} and {b} at {p}, and old loyalties are tested.",
  "{a} uncovers a letter that ties {b} to {t}.",
  "{b} betrays {a} at {p}, and the plan falls apart.",
  "{a} chooses to protect {b} instead of finishing the search, and loses the lead on {t}.",
  "In the quiet after the chase, {a} and {b} admit what they each want from {t}.",
  "{a} returns to {p} to face what was left behind.",
  "{b} reveals the truth about {t}, and {a} must decide whom to believe.",
  "The night market at {p} hides a meeting between {b} and an old enemy of {a}.",
  "{a} makes a sacrifice at {p} that turns the course of {t}.",
  "{a} and {b} stand together at {p} as the consequences of {t} arrive."
]

const actTemplates: ReadonlyArray<string> = [
  "{a} is drawn into {t} when an ordinary day at {p} goes wrong.",
  "The search for answers drives {a} and {b} apart as {t} deepens.",
  "Everything {a} has learned is tested in a final reckoning with {b} at {p}.",
  "{a} and {b} must choose between safety and the truth of {t}.",
  "Old debts come due at {p}, and {a} can no longer stay neutral."
]

const titleTemplates: ReadonlyArray<string> = [
  "The {P} Reckoning",
  "Shadows over {P}",
  "What {A} Kept",
  "The Last Light of {P}",
  "A Debt at {P}",
  "{A} and the Tide"
]

/** A thread title inside a sentence: "The cracked lens" reads as "the cracked lens". */
const midSentence = (phrase: string) => phrase.replace(/^(The|A|An) /, (article) => article.toLowerCase())

/**
 * A deterministic writer over a cast.
 *
 * @since 0.1.0
 */
export interface Writer {
  readonly cast: Cast
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  readonly int: (min: number, max: number) => number
  readonly beat: () => string
  readonly actSummary: () => string
  readonly title: () => string
  readonly logline: () => string
  readonly character: () => string
  readonly place: () => string
}

/**
 * A writer seeded by the prompt and a seed: the same prompt and seed give the same text.
 *
 * @since 0.1.0
 */
export const makeWriter = (prompt: string, seed: number): Writer => {
  const cast = castOf(prompt)
  const random = generator(hash(prompt, seed))
  const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]!
  const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1))
  const two = () => {
    const a = pick(cast.characters)
    const others = cast.characters.filter((c) => c !== a)
    return { a, b: others.length > 0 ? pick(others) : "a stranger" }
  }
  const fill = (template: string) => {
    const { a, b } = two()
    const sentence = template
      .replaceAll("{a}", a)
      .replaceAll("{b}", b)
      .replaceAll("{p}", pick(cast.places))
      .replaceAll("{t}", midSentence(pick(cast.threads)))
      .replaceAll("{A}", a.split(" ")[0]!)
      .replaceAll("{P}", pick(cast.places).replace(/^the /i, ""))
    return sentence.charAt(0).toUpperCase() + sentence.slice(1)
  }
  return {
    cast,
    pick,
    int,
    beat: () => fill(pick(beatTemplates)),
    actSummary: () => fill(pick(actTemplates)),
    title: () => fill(pick(titleTemplates)),
    logline: () => fill("When {t} threatens everything at {p}, {a} must trust {b} to see it through."),
    character: () => pick(cast.characters),
    place: () => pick(cast.places)
  }
}

/**
 * Prose paragraphs of about `words` words.
 *
 * @since 0.1.0
 */
export const prose = (writer: Writer, words: number): string => {
  const paragraphs: Array<string> = []
  let count = 0
  while (count < words) {
    const sentences = Array.from({ length: writer.int(3, 5) }, () => writer.beat())
    const paragraph = sentences.join(" ")
    paragraphs.push(paragraph)
    count += paragraph.split(/\s+/).length
  }
  return paragraphs.join("\n\n")
}

// =============================================================================
// JSON schema
// =============================================================================

type JsonSchema = {
  readonly $ref?: string
  readonly $defs?: Record<string, JsonSchema>
  readonly definitions?: Record<string, JsonSchema>
  readonly type?: string | ReadonlyArray<string>
  readonly properties?: Record<string, JsonSchema>
  readonly items?: JsonSchema
  readonly minItems?: number
  readonly maxItems?: number
  readonly minLength?: number
  readonly maxLength?: number
  readonly minimum?: number
  readonly maximum?: number
  readonly enum?: ReadonlyArray<unknown>
  readonly const?: unknown
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly oneOf?: ReadonlyArray<JsonSchema>
  readonly allOf?: ReadonlyArray<JsonSchema>
}

const isSchema = (u: unknown): u is JsonSchema => typeof u === "object" && u !== null && !Array.isArray(u)

/** The most levels of nesting followed, so that a recursive schema cannot loop. */
const maxDepth = 12

/**
 * A value that conforms to a JSON schema, its strings written from the cast by property name (title, logline,
 * summary, characters, location...), and its arrays of leaf objects sized so that the whole is about `words`.
 *
 * @since 0.1.0
 */
export const fromSchema = (root: unknown, writer: Writer, words: number): unknown => {
  const schemaRoot = isSchema(root) ? root : {}
  const definitions = { ...schemaRoot.definitions, ...schemaRoot.$defs }
  const resolve = (schema: JsonSchema): JsonSchema => {
    let current = schema
    for (let i = 0; i < maxDepth && current.$ref !== undefined; i++) {
      // JSON pointer escapes: `~1` is "/", `~0` is "~".
      const name = current.$ref.replace(/^#\/(\$defs|definitions)\//, "").replaceAll("~1", "/").replaceAll("~0", "~")
      current = current.$ref === "#" ? schemaRoot : definitions[name] ?? {}
    }
    if (current.allOf !== undefined) {
      const { allOf, ...rest } = current
      return allOf.reduce<JsonSchema>((acc, part) => {
        const resolved = resolve(part)
        return { ...acc, ...resolved, properties: { ...acc.properties, ...resolved.properties } }
      }, rest)
    }
    return current
  }
  /** Does an item schema hold arrays of objects (an act holds beats), rather than being a leaf (a beat)? */
  const holdsObjects = (schema: JsonSchema): boolean =>
    Object.values(resolve(schema).properties ?? {}).some((p) => {
      const property = resolve(p)
      return property.type === "array" && resolve(property.items ?? {}).properties !== undefined
    })
  // Leaf objects (beats) carry about 30 words; three groups (acts) share them.
  const leafItems = Math.max(2, Math.round(words / 3 / 32))
  /** Properties that refer to people or places: filled last, from the names the object's own text mentions. */
  const isReference = (key: string) => /character|who|location|place|setting/i.test(key)

  const clip = (value: string, schema: JsonSchema): string => {
    const max = schema.maxLength ?? Infinity
    const clipped = value.length > max ? value.slice(0, max) : value
    return clipped.length < (schema.minLength ?? 0) ? clipped.padEnd(schema.minLength ?? 0, ".") : clipped
  }

  const text = (key: string, schema: JsonSchema, mentioned: string): string => {
    const lower = key.toLowerCase()
    if (/location|place|setting/.test(lower)) {
      return clip(writer.cast.places.find((p) => mentioned.includes(p)) ?? writer.place(), schema)
    }
    if (/character|who/.test(lower) || lower === "name") return clip(writer.character(), schema)
    const value = lower.includes("title")
      ? writer.title()
      : lower.includes("logline") || lower.includes("premise")
      ? writer.logline()
      : lower.includes("summary") && writer.int(0, 1) === 0
      ? writer.actSummary()
      : writer.beat()
    return clip(value, schema)
  }

  const names = (key: string, item: JsonSchema, count: number, mentioned: string): Array<string> => {
    // The people the text names, when it names any; otherwise a few of the cast.
    const inText = /character|who/i.test(key) ? writer.cast.characters.filter((c) => mentioned.includes(c)) : []
    const values = new Set(inText.slice(0, Math.max(count, inText.length)).map((name) => clip(name, item)))
    if (values.size > 0) return [...values]
    for (let i = 0; values.size < count && i < count * 4; i++) values.add(text(key, item, mentioned))
    return [...values]
  }

  const go = (key: string, raw: JsonSchema, depth: number, mentioned: string): unknown => {
    const schema = resolve(raw)
    if (schema.const !== undefined) return schema.const
    if (schema.enum !== undefined && schema.enum.length > 0) return writer.pick(schema.enum)
    const alternatives = schema.anyOf ?? schema.oneOf
    if (alternatives !== undefined) {
      const nonNull = alternatives.find((a) => resolve(a).type !== "null") ?? alternatives[0] ?? {}
      return go(key, nonNull, depth, mentioned)
    }
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type
    if (depth > maxDepth) return type === "array" ? [] : type === "object" ? {} : null
    switch (type) {
      case "object":
      case undefined: {
        if (type === undefined && schema.properties === undefined) return text(key, schema, mentioned)
        const entries = Object.entries(schema.properties ?? {})
        const out: Record<string, unknown> = {}
        for (const [name, property] of entries.filter(([name]) => !isReference(name))) {
          out[name] = go(name, property, depth + 1, "")
        }
        const ownText = JSON.stringify(out)
        for (const [name, property] of entries.filter(([name]) => isReference(name))) {
          out[name] = go(name, property, depth + 1, ownText)
        }
        // Keep the schema's property order.
        return Object.fromEntries(entries.map(([name]) => [name, out[name]]))
      }
      case "array": {
        const item = resolve(schema.items ?? {})
        const itemType = Array.isArray(item.type) ? item.type[0] : item.type
        const wanted = itemType === "string"
          ? writer.int(1, Math.min(3, writer.cast.characters.length))
          : holdsObjects(item)
          ? 3
          : leafItems
        const count = Math.max(schema.minItems ?? 0, Math.min(schema.maxItems ?? Infinity, wanted))
        const singular = key.replace(/s$/, "")
        if (itemType === "string") return names(key, item, count, mentioned)
        return Array.from({ length: count }, () => go(singular, item, depth + 1, mentioned))
      }
      case "string":
        return text(key, schema, mentioned)
      case "integer":
        return writer.int(Math.ceil(schema.minimum ?? 1), Math.floor(schema.maximum ?? 10))
      case "number":
        return (schema.minimum ?? 0) + ((schema.maximum ?? 1) - (schema.minimum ?? 0)) / 2
      case "boolean":
        return writer.int(0, 1) === 1
      case "null":
        return null
      default:
        return null
    }
  }
  return go("root", schemaRoot, 0, "")
}

/**
 * The JSON schema a prompt asks the reply to match (a text that contains `{"$schema": ...}`), if any.
 *
 * @since 0.1.0
 */
export const schemaInPrompt = (prompt: string): unknown => {
  const start = prompt.indexOf("{\"$schema\"")
  const end = start === -1 ? -1 : Json.closingIndex(prompt, start)
  if (end === -1) return undefined
  try {
    return JSON.parse(prompt.slice(start, end + 1))
  } catch {
    return undefined
  }
}

/**
 * How many words a prompt asks for ("about 800 words"), if it says.
 *
 * @since 0.1.0
 */
export const wordsAskedFor = (prompt: string): number | undefined => {
  const match = /about (\d{2,6}) words/i.exec(prompt)
  return match === null ? undefined : Number(match[1])
}

/**
 * The tokens of a text as the simulated gateway bills them: the o200k encoding of current OpenAI models, for
 * both dialects (Claude's own tokenizer is not public).
 *
 * @since 0.1.0
 */
export const countTokens = (text: string): number => o200k.countTokens(text)
