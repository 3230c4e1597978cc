/**
 * Reading an outline while its JSON is still arriving: an incremental scan that reports each part of the outline
 * as soon as it is complete (the title and logline, each act's title and summary, each beat as its object closes),
 * never a fragment, always in the outline's order. One pass over each character, whatever the size of the pieces
 * the stream delivers: only what may still be read again (an open string, an open beat's object) is kept of the
 * text, so a piece costs its own length, not the length of all before it.
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

type Path = ReadonlyArray<string | number>

interface Frame {
  readonly kind: "object" | "array"
  /** Where the container sits in the document: keys and (0-based) indexes. */
  readonly path: Path
  /** Where it opened, in the text kept (moved back as the text before it is dropped; only a beat's is read). */
  start: number
  /** In an object: whether the next string is a key. */
  expectKey: boolean
  /** In an object: the key whose value comes next. In an array: the index of the element being read. */
  key: string | number
}

// =============================================================================
// What is known of the outline, and what was told
// =============================================================================

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

/** The schema trims every text of an outline but a beat's location; so does what is told while it streams. */
const trimmed = (value: unknown): string => (typeof value === "string" ? value.trim() : "")

/** Records a string value at `path`, when it is one the outline's parts are told from. */
const recordString = (outline: OutlineSoFar, path: Path, value: string): void => {
  if (path.length === 1 && path[0] === "title") outline.title = value.trim()
  else if (path.length === 1 && path[0] === "logline") outline.logline = value.trim()
  else if (path.length === 3 && path[0] === "acts" && typeof path[1] === "number") {
    if (path[2] === "title") actOf(outline, path[1]).title = value.trim()
    if (path[2] === "summary") actOf(outline, path[1]).summary = value.trim()
  }
}

/** Whether a container is a beat: the only one read whole from its JSON when it closes. */
const isBeat = (path: Path): path is readonly ["acts", number, "beats", number] =>
  path.length === 4 && path[0] === "acts" && path[2] === "beats" && typeof path[1] === "number" &&
  typeof path[3] === "number"

/** Records a closed container: the outline, an act, or a beat (read whole from its JSON, `json()`). */
const recordClosed = (outline: OutlineSoFar, path: Path, json: () => string): void => {
  if (path.length === 0) outline.closed = true
  else if (path.length === 2 && path[0] === "acts" && typeof path[1] === "number") actOf(outline, path[1]).closed = true
  else if (isBeat(path)) {
    let value: Record<string, unknown>
    try {
      value = JSON.parse(json())
    } catch {
      return
    }
    actOf(outline, path[1]).beats[path[3]] = {
      _tag: "Beat",
      act: path[1] + 1,
      beat: path[3] + 1,
      summary: trimmed(value.summary),
      characters: Array.isArray(value.characters) ? value.characters.map(trimmed) : [],
      location: typeof value.location === "string" ? value.location : ""
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
  let text = ""
  let cursor = 0
  let started = false
  let inString = false
  let escaped = false
  let stringStart = 0
  const stack: Array<Frame> = []
  const outline: OutlineSoFar = { closed: false, headingTold: false, acts: [] }

  /** The string that just closed at `cursor`: a key, or a value the outline's parts are told from (else unread). */
  const closeString = (frame: Frame | undefined) => {
    if (frame === undefined) return
    if (frame.kind === "object" && frame.expectKey) {
      const key = stringAt(text, stringStart, cursor)
      if (key === undefined) return
      frame.key = key
      frame.expectKey = false
    } else if (isToldFrom(frame)) {
      const value = stringAt(text, stringStart, cursor)
      if (value !== undefined) recordString(outline, [...frame.path, frame.key], value)
    }
  }

  /** A character outside strings: a string opens, a container opens or closes, a member or an element ends. */
  const step = (char: string, top: Frame | undefined) => {
    switch (char) {
      case "\"":
        inString = true
        stringStart = cursor
        break
      case "{":
      case "[": {
        const path = top === undefined ? [] : [...top.path, top.key]
        stack.push({ kind: char === "{" ? "object" : "array", path, start: cursor, expectKey: char === "{", key: 0 })
        break
      }
      case "}":
      case "]": {
        const frame = stack.pop()
        if (frame !== undefined) recordClosed(outline, frame.path, () => text.slice(frame.start, cursor + 1))
        break
      }
      case ",":
        if (top?.kind === "object") top.expectKey = true
        else if (top?.kind === "array") top.key = (top.key as number) + 1
        break
    }
  }

  /**
   * Drops the text no scan reads again: everything before the cursor, but an open string (read whole when it
   * closes) and an open beat's object. Appending to the rest and scanning it then costs what was kept, which a
   * string or a beat bounds, where appending to the whole text would copy all of it again at each piece.
   */
  const dropRead = () => {
    let keep = inString ? stringStart : cursor
    for (const frame of stack) if (frame.start < keep && isBeat(frame.path)) keep = frame.start
    if (keep === 0) return
    text = text.slice(keep)
    cursor -= keep
    stringStart -= keep
    for (const frame of stack) frame.start -= keep
  }

  return (delta) => {
    // Whatever follows the outline's object is not read.
    if (outline.closed) return nothingTold
    text += delta
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
          closeString(stack[stack.length - 1])
        }
        cursor++
        continue
      }
      const char = text[cursor]!
      if (!started) {
        if (char !== "{") {
          cursor++
          continue
        }
        const opens = opensObject(text, cursor)
        if (opens === undefined) break
        if (!opens) {
          cursor++
          continue
        }
        started = true
      }
      step(char, stack[stack.length - 1])
      cursor++
    }
    dropRead()
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

/** Whether a string value in this container is one the outline's parts are told from (see `recordString`). */
const isToldFrom = (frame: Frame): boolean =>
  frame.kind === "object" && (
    frame.path.length === 0
      ? frame.key === "title" || frame.key === "logline"
      : frame.path.length === 2 && frame.path[0] === "acts" && (frame.key === "title" || frame.key === "summary")
  )

/** Whether `text` holds a plain string from `start` to `end`: no escape, no control character (JSON forbids them raw). */
const isPlain = (text: string, start: number, end: number): boolean => {
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i)
    if (code < 32 || code === backslash || code === quote) return false
  }
  return true
}

/** The JSON string from the quote at `start` to the quote at `end`; `undefined` when it is not valid JSON. */
const stringAt = (text: string, start: number, end: number): string | undefined => {
  if (isPlain(text, start + 1, end)) return text.slice(start + 1, end)
  try {
    const value: unknown = JSON.parse(text.slice(start, end + 1))
    return typeof value === "string" ? value : undefined
  } catch {
    return undefined
  }
}
