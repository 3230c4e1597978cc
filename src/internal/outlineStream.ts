/**
 * Reading an outline while its JSON is still arriving: an incremental scan that reports each part of the outline
 * as soon as it is complete (the title and logline, each act's title and summary, each beat as its object closes),
 * never a fragment. One pass over each character, whatever the size of the pieces the stream delivers.
 *
 * @internal
 */

/** A part of the outline that is complete. Acts and beats count from 1. */
export type OutlinePiece =
  | { readonly _tag: "Heading"; readonly title: string; readonly logline: string }
  | { readonly _tag: "Act"; readonly act: number; readonly title: string; readonly summary: string }
  | {
    readonly _tag: "Beat"
    readonly act: number
    readonly beat: number
    readonly summary: string
    readonly characters: ReadonlyArray<string>
    readonly location: string
  }

/** Feeds the next piece of the JSON; returns the parts of the outline it completed. */
export type OutlineScanner = (delta: string) => ReadonlyArray<OutlinePiece>

interface Frame {
  readonly kind: "object" | "array"
  /** Where the container sits in the document: keys and (0-based) indexes. */
  readonly path: ReadonlyArray<string | number>
  /** Where it opened, in the whole text. */
  readonly start: number
  /** In an object: whether the next string is a key. */
  expectKey: boolean
  /** In an object: the key whose value comes next. In an array: the index of the element being read. */
  key: string | number
}

/** `acts[i].beats[j]`: the act and beat indexes of a beat's object, else undefined. */
const beatAt = (path: ReadonlyArray<string | number>): readonly [number, number] | undefined =>
  path.length === 4 && path[0] === "acts" && path[2] === "beats" && typeof path[1] === "number" &&
    typeof path[3] === "number"
    ? [path[1], path[3]]
    : undefined

const asString = (value: unknown): string => (typeof value === "string" ? value.trim() : "")

/**
 * A scanner for one outline's JSON. It tolerates text around the object (a model that writes a sentence first):
 * reading starts at the first `{`.
 */
export const make = (): OutlineScanner => {
  let text = ""
  let cursor = 0
  let started = false
  let inString = false
  let escaped = false
  let stringStart = 0
  const stack: Array<Frame> = []
  // What is known of the heading and of each act, and what was already reported.
  let title: string | undefined
  let logline: string | undefined
  let headingSent = false
  const acts: Array<{ title?: string; summary?: string; sent: boolean }> = []

  const actOf = (index: number) => (acts[index] ??= { sent: false })

  const onString = (frame: Frame | undefined, value: string, out: Array<OutlinePiece>) => {
    if (frame === undefined) return
    if (frame.kind === "object" && frame.expectKey) {
      frame.key = value
      frame.expectKey = false
      return
    }
    const path = [...frame.path, frame.key]
    if (path.length === 1 && path[0] === "title") title = value.trim()
    else if (path.length === 1 && path[0] === "logline") logline = value.trim()
    else if (path.length === 3 && path[0] === "acts" && typeof path[1] === "number") {
      if (path[2] === "title") actOf(path[1]).title = value.trim()
      if (path[2] === "summary") actOf(path[1]).summary = value.trim()
    }
    reportKnown(out)
  }

  const reportKnown = (out: Array<OutlinePiece>) => {
    if (!headingSent && title !== undefined && logline !== undefined) {
      headingSent = true
      out.push({ _tag: "Heading", title, logline })
    }
    acts.forEach((act, index) => {
      if (!act.sent && act.title !== undefined && act.summary !== undefined) {
        act.sent = true
        out.push({ _tag: "Act", act: index + 1, title: act.title, summary: act.summary })
      }
    })
  }

  const onClose = (frame: Frame, end: number, out: Array<OutlinePiece>) => {
    const at = beatAt(frame.path)
    if (at === undefined || frame.kind !== "object") return
    let value: Record<string, unknown>
    try {
      value = JSON.parse(text.slice(frame.start, end + 1))
    } catch {
      return
    }
    // A beat before its act's title and summary: the act is reported with what is known of it.
    const act = actOf(at[0])
    if (!headingSent && title !== undefined) {
      headingSent = true
      out.push({ _tag: "Heading", title, logline: logline ?? "" })
    }
    if (!act.sent) {
      act.sent = true
      out.push({ _tag: "Act", act: at[0] + 1, title: act.title ?? "", summary: act.summary ?? "" })
    }
    out.push({
      _tag: "Beat",
      act: at[0] + 1,
      beat: at[1] + 1,
      summary: asString(value.summary),
      characters: Array.isArray(value.characters) ? value.characters.map(asString) : [],
      location: asString(value.location)
    })
  }

  return (delta) => {
    text += delta
    const out: Array<OutlinePiece> = []
    for (; cursor < text.length; cursor++) {
      const char = text[cursor]!
      if (!started) {
        if (char !== "{") continue
        started = true
      }
      const top = stack.at(-1)
      if (inString) {
        if (escaped) escaped = false
        else if (char === "\\") escaped = true
        else if (char === "\"") {
          inString = false
          let value: unknown
          try {
            value = JSON.parse(text.slice(stringStart, cursor + 1))
          } catch {
            value = undefined
          }
          if (typeof value === "string") onString(top, value, out)
        }
        continue
      }
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
          if (frame !== undefined) onClose(frame, cursor, out)
          break
        }
        case ",":
          if (top?.kind === "object") top.expectKey = true
          else if (top?.kind === "array") top.key = (top.key as number) + 1
          break
      }
    }
    return out
  }
}
