/**
 * Reading an outline while its JSON is still arriving: an incremental scan that reports each part of the outline
 * as soon as it is complete (the title and logline, each act's title and summary, each beat as its object closes),
 * never a fragment, always in the outline's order. One pass over each character, whatever the size of the pieces
 * the stream delivers: of the text only an open string's part is kept (joined to the next, read when it closes),
 * and a beat is made from its strings as they close, so a piece costs its own length, whatever came before it.
 *
 * @internal
 */

/** A part of the outline that is complete. Acts and beats count from 1. */
export type OutlinePiece =
  | { readonly _tag: "Heading"; readonly title: string; readonly logline: string }
  | { readonly _tag: "Act"; readonly act: number; readonly title: string; readonly summary: string }
  | BeatPiece

type BeatPiece = {
  readonly _tag: "Beat"
  readonly act: number
  readonly beat: number
  readonly summary: string
  readonly characters: ReadonlyArray<string>
  readonly location: string
}

/** Feeds the next piece of the JSON; returns the parts of the outline it completed. */
export type OutlineScanner = (delta: string) => ReadonlyArray<OutlinePiece>

/**
 * What a container is in the outline, known when it opens from what holds it and under which key: the scan keeps no
 * path, only this (and the act and beat it belongs to).
 */
type Role = "outline" | "acts" | "act" | "beats" | "beat" | "characters" | "other"

interface Frame {
  readonly kind: "object" | "array"
  readonly role: Role
  /** The act (0-based) an act, its beats, a beat or its characters belong to. */
  readonly act: number
  /** The beat (0-based) a beat or its characters are. */
  readonly beat: number
  /** In an object: whether the next string is a key. */
  expectKey: boolean
  /** In an object: the key whose value comes next. In an array: the index of the element being read. */
  key: string | number
  /** In an array: whether an element began (an empty array has none). */
  filled: boolean
  /** The beat a beat's object or its characters make, as their strings close. */
  readonly draft: BeatDraft | undefined
}

/** The role of a container that opens in `parent` (at its current key). */
const roleIn = (parent: Frame | undefined, kind: Frame["kind"]): Role => {
  if (parent === undefined) return "outline"
  switch (parent.role) {
    case "outline":
      return parent.key === "acts" && kind === "array" ? "acts" : "other"
    case "acts":
      return kind === "object" ? "act" : "other"
    case "act":
      return parent.key === "beats" && kind === "array" ? "beats" : "other"
    case "beats":
      return kind === "object" ? "beat" : "other"
    case "beat":
      return parent.key === "characters" && kind === "array" ? "characters" : "other"
    default:
      return "other"
  }
}

// =============================================================================
// What is known of the outline, and what was told
// =============================================================================

/** A beat whose object is still open: its strings as they close (the schema's trim applied, but the location's). */
interface BeatDraft {
  summary?: string
  location?: string
  characters: Array<string>
}

interface ActSoFar {
  title?: string
  summary?: string
  /** Its object closed: what it lacks it will never have. */
  closed: boolean
  told: boolean
  readonly beats: Array<BeatPiece>
  beatsTold: number
}

interface OutlineSoFar {
  title?: string
  logline?: string
  /** The outline's object closed. */
  closed: boolean
  headingTold: boolean
  readonly acts: Array<ActSoFar>
}

const actOf = (
  outline: OutlineSoFar,
  index: number
): ActSoFar => (outline.acts[index] ??= { closed: false, told: false, beats: [], beatsTold: 0 })

/** Records a string value that closed in `frame`, when it is one the outline's parts are told from. */
const recordString = (outline: OutlineSoFar, frame: Frame, value: string): void => {
  switch (frame.role) {
    case "outline":
      if (frame.key === "title") outline.title = value.trim()
      else if (frame.key === "logline") outline.logline = value.trim()
      break
    case "act":
      if (frame.key === "title") actOf(outline, frame.act).title = value.trim()
      else if (frame.key === "summary") actOf(outline, frame.act).summary = value.trim()
      break
    case "beat":
      if (frame.key === "summary") frame.draft!.summary = value.trim()
      else if (frame.key === "location") frame.draft!.location = value
      break
    case "characters":
      frame.draft!.characters[frame.key as number] = value.trim()
      break
  }
}

/** Records a closed container: the outline, an act, a beat (made from its draft) or a beat's characters. */
const recordClosed = (outline: OutlineSoFar, frame: Frame): void => {
  switch (frame.role) {
    case "outline":
      outline.closed = true
      break
    case "act":
      actOf(outline, frame.act).closed = true
      break
    case "characters": {
      // An element that is not a string counts as an empty name, as in the parsed object.
      const characters = frame.draft!.characters
      const count = frame.filled ? (frame.key as number) + 1 : 0
      for (let i = 0; i < count; i++) characters[i] ??= ""
      break
    }
    case "beat": {
      const draft = frame.draft!
      actOf(outline, frame.act).beats[frame.beat] = {
        _tag: "Beat",
        act: frame.act + 1,
        beat: frame.beat + 1,
        summary: draft.summary ?? "",
        characters: draft.characters,
        location: draft.location ?? ""
      }
      break
    }
  }
}

/**
 * Tells, in the outline's order, what became complete: the heading once its title and logline are known; an act
 * once its title and summary are known; its beats after it. Keys written in another order (beats before the
 * act's title) hold what follows until what precedes it is known, or until its object closes without it.
 */
const tellReady = (outline: OutlineSoFar): ReadonlyArray<OutlinePiece> => {
  let out: Array<OutlinePiece> | undefined
  if (!outline.headingTold) {
    if (!outline.closed && (outline.title === undefined || outline.logline === undefined)) return nothingTold
    outline.headingTold = true
    out = [{ _tag: "Heading", title: outline.title ?? "", logline: outline.logline ?? "" }]
  }
  for (let index = 0; index < outline.acts.length; index++) {
    const act = outline.acts[index]
    if (act === undefined) continue
    if (!act.told) {
      const known = act.title !== undefined && act.summary !== undefined
      if (!known && !act.closed && !outline.closed) break
      act.told = true
      ;(out ??= []).push({ _tag: "Act", act: index + 1, title: act.title ?? "", summary: act.summary ?? "" })
    }
    for (; act.beatsTold < act.beats.length && act.beats[act.beatsTold] !== undefined; act.beatsTold++) {
      ;(out ??= []).push(act.beats[act.beatsTold]!)
    }
  }
  return out ?? nothingTold
}

/** What most pieces complete: nothing (one array for all of them, as most pieces are a few characters). */
const nothingTold: ReadonlyArray<OutlinePiece> = []

// =============================================================================
// The scan
// =============================================================================

/**
 * Whether the `{` at `at` opens a JSON object: followed by a key or by `}`. `undefined` while the text ends
 * before it can be told.
 */
const opensObject = (text: string, at: number): boolean | undefined => {
  for (let i = at + 1; i < text.length; i++) {
    const char = text[i]!
    if (char === " " || char === "\n" || char === "\r" || char === "\t") continue
    return char === "\"" || char === "}"
  }
  return undefined
}

/**
 * A scanner for one outline's JSON. It tolerates text around the object (a model that writes a sentence first,
 * braces and all): reading starts at the first `{` that opens an object.
 */
export const make = (): OutlineScanner => {
  /** Before the object starts: the text from a `{` not yet known to open it (its next characters are to come). */
  let before = ""
  let started = false
  let inString = false
  let escaped = false
  /** The part of an open string (from its quote) that came in earlier pieces: joined, never scanned again. */
  let openString = ""
  const stack: Array<Frame> = []
  const outline: OutlineSoFar = { closed: false, headingTold: false, acts: [] }

  /** A string that closed (`raw`, quotes and all): a key, or a value the outline's parts are told from (else unread). */
  const closeString = (frame: Frame | undefined, raw: string) => {
    if (frame === undefined) return
    if (frame.kind === "object" && frame.expectKey) {
      const key = stringOf(raw)
      if (key === undefined) return
      frame.key = key
      frame.expectKey = false
    } else if (frame.role !== "other") {
      const value = stringOf(raw)
      if (value !== undefined) recordString(outline, frame, value)
    }
  }

  /** A character outside strings: a container opens or closes, a member or an element ends, a value begins. */
  const step = (char: string, top: Frame | undefined) => {
    switch (char) {
      case "{":
      case "[": {
        const kind = char === "{" ? "object" : "array"
        const role = roleIn(top, kind)
        if (top !== undefined) top.filled = true
        if (role === "characters") top!.draft!.characters = [] // a key written twice: the last wins
        stack.push({
          kind,
          role,
          act: role === "act" ? top!.key as number : top?.act ?? 0,
          beat: role === "beat" ? top!.key as number : top?.beat ?? 0,
          expectKey: kind === "object",
          key: 0,
          filled: false,
          draft: role === "beat" ? { characters: [] } : role === "characters" ? top!.draft : undefined
        })
        break
      }
      case "}":
      case "]": {
        const frame = stack.pop()
        if (frame !== undefined) recordClosed(outline, frame)
        break
      }
      case ",":
        if (top?.kind === "object") top.expectKey = true
        else if (top?.kind === "array") top.key = (top.key as number) + 1
        break
      case " ":
      case "\n":
      case "\r":
      case "\t":
      case ":":
        break
      default:
        // A number, `true`, `false` or `null` (a string opens elsewhere): an element of an array all the same.
        if (top !== undefined) top.filled = true
    }
  }

  /**
   * Where the object starts in `text`: the first `{` that opens one. `undefined` when there is none yet (the text
   * from a `{` that cannot be told yet is kept in `before`).
   */
  const findStart = (text: string): number | undefined => {
    for (let at = text.indexOf("{"); at !== -1; at = text.indexOf("{", at + 1)) {
      const opens = opensObject(text, at)
      if (opens === undefined) {
        before = text.slice(at)
        return undefined
      }
      if (opens) return at
    }
    before = ""
    return undefined
  }

  return (delta) => {
    // Whatever follows the outline's object is not read.
    if (outline.closed) return nothingTold
    let text = delta
    let cursor = 0
    if (!started) {
      text = before + delta
      const at = findStart(text)
      if (at === undefined) return nothingTold
      started = true
      before = ""
      cursor = at
    }
    // Where the open string's part in this piece begins (its quote, or this piece's start).
    let stringFrom = 0
    while (cursor < text.length && !outline.closed) {
      if (inString) {
        // Most of an outline is inside strings: jump to the next quote or backslash.
        if (escaped) {
          escaped = false
          cursor++
          continue
        }
        cursor = stringStop(text, cursor)
        if (cursor === text.length) break
        if (text.charCodeAt(cursor) === backslash) escaped = true
        else {
          inString = false
          closeString(stack[stack.length - 1], openString + text.slice(stringFrom, cursor + 1))
          openString = ""
        }
        cursor++
        continue
      }
      const char = text[cursor]!
      if (char === "\"") {
        inString = true
        stringFrom = cursor
        const top = stack[stack.length - 1]
        if (top !== undefined) top.filled = true
      } else {
        step(char, stack[stack.length - 1])
      }
      cursor++
    }
    // An open string's piece is kept whole (joined, not copied: it is read once, when the string closes).
    if (inString) openString += text.slice(stringFrom)
    return tellReady(outline)
  }
}

/** Where a string's scan stops: its closing quote, or an escape (the text's length when neither has come yet). */
const stringStop = (text: string, from: number): number => {
  let at = from
  for (; at < text.length; at++) {
    const code = text.charCodeAt(at)
    if (code === quote || code === backslash) break
  }
  return at
}
const backslash = 92
const quote = 34

/** Whether `text` holds a plain string from `start` to `end`: no escape, no control character (JSON forbids them raw). */
const isPlain = (text: string, start: number, end: number): boolean => {
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i)
    if (code < 32 || code === backslash || code === quote) return false
  }
  return true
}

/** The JSON string `raw` (quotes and all); `undefined` when it is not valid JSON. */
const stringOf = (raw: string): string | undefined => {
  if (isPlain(raw, 1, raw.length - 1)) return raw.slice(1, -1)
  try {
    const value: unknown = JSON.parse(raw)
    return typeof value === "string" ? value : undefined
  } catch {
    return undefined
  }
}
