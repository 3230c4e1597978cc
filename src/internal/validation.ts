/**
 * Naming a Schema parse error's field and shortening its reason, for the errors that report bad input.
 */
import * as ParseResult from "effect/ParseResult"

/** The longest field name kept: a client's unknown field may be named with megabytes. */
const maxKeyLength = 60

/** The longest path kept. */
const maxPathLength = 200

const shorten = (text: string, max: number) => (text.length <= max ? text : `${text.slice(0, max)}…`)

/** Renders a path such as `["characters", 3, "name"]` as `characters[3].name`, each name and the whole cut short. */
export const formatPath = (path: ReadonlyArray<PropertyKey>, root?: string): string => {
  let out = root ?? ""
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`
    else out += (out === "" ? "" : ".") + shorten(String(key), maxKeyLength)
    if (out.length > maxPathLength) return shorten(out, maxPathLength)
  }
  return out === "" ? (root ?? "input") : out
}

/** The longest reason kept: Schema quotes the bad value, which may be megabytes long. */
const maxReasonLength = 300

/** Shortens the quoted values in a reason (a linear scan: a regex would recurse on megabytes), then the reason. */
export const abbreviate = (reason: string): string => {
  let out = ""
  let index = 0
  while (index < reason.length && out.length <= maxReasonLength) {
    const open = reason.indexOf("\"", index)
    if (open === -1) {
      out += reason.slice(index)
      break
    }
    let close = open + 1
    while (close < reason.length && reason[close] !== "\"") close += reason[close] === "\\" ? 2 : 1
    const quoted = reason.slice(open + 1, close)
    out += reason.slice(index, open) + (quoted.length > 80 ? `"${quoted.slice(0, 60)}…"` : `"${quoted}"`)
    index = close + 1
  }
  return out.length <= maxReasonLength ? out : `${out.slice(0, maxReasonLength)}…`
}

/** Some character a reader can see: not only spaces, control characters and invisible formatting (zero-width). */
export const visibleText = /[^\s\p{Cc}\p{Cf}]/u

/**
 * A text as `Domain`'s text fields decode it (`Trim`, `nonEmptyString`, `maxLength(max)`, `visibleText`): trimmed,
 * when it is a string with something visible, at most `max` characters once trimmed; else `undefined`. For the
 * decoders' fast paths.
 */
export const trimmedWithin = (value: unknown, max: number): string | undefined => {
  if (typeof value !== "string") return undefined
  const trimmed = value.trim()
  return trimmed.length > 0 && trimmed.length <= max && visibleText.test(trimmed) ? trimmed : undefined
}

/** How much of a value a parse issue may quote before it is stood in for (characters, about). */
const maxQuotedSize = 2_000

/** Whether a value is larger than `budget` (strings' lengths and the entries of arrays and objects, counted). */
const largerThan = (value: unknown, budget: number): boolean => {
  const stack: Array<unknown> = [value]
  let left = budget
  while (stack.length > 0) {
    const current = stack.pop()
    if (typeof current === "string") left -= current.length
    else if (typeof current === "object" && current !== null) {
      const entries = Object.values(current)
      left -= entries.length + 1
      if (left >= 0) stack.push(...entries)
    } else left -= 1
    if (left < 0) return true
  }
  return false
}

/** What a large array or object is told as: `<an array of 3000 items>`, not quoted as if the client sent that text. */
class Described {
  constructor(readonly description: string) {}
  toString() {
    return `<${this.description}>`
  }
}

/** A large value as a parse issue quotes it: a string's start, or what an array or an object holds. */
const standIn = (value: unknown): unknown =>
  typeof value === "string"
    ? `${value.slice(0, 100)}…`
    : Array.isArray(value)
    ? new Described(`an array of ${value.length} items`)
    : new Described(`an object of ${Object.keys(value as object).length} fields`)

const short = (actual: unknown): unknown => (largerThan(actual, maxQuotedSize) ? standIn(actual) : actual)

/**
 * `issue` with every large value it would quote stood in for: Schema's formatters write the whole bad value into
 * each message (once per member of a union), and a megabyte of it took most of a second to format. The messages of
 * small values are unchanged.
 */
export const withShortActuals = (issue: ParseResult.ParseIssue): ParseResult.ParseIssue => {
  switch (issue._tag) {
    case "Type":
      return new ParseResult.Type(issue.ast, short(issue.actual), issue.message)
    case "Forbidden":
      return new ParseResult.Forbidden(issue.ast, short(issue.actual), issue.message)
    case "Unexpected":
      return new ParseResult.Unexpected(short(issue.actual), issue.message)
    case "Missing":
      return issue
    case "Pointer":
      return new ParseResult.Pointer(issue.path, short(issue.actual), withShortActuals(issue.issue))
    case "Refinement":
      return new ParseResult.Refinement(issue.ast, short(issue.actual), issue.kind, withShortActuals(issue.issue))
    case "Transformation":
      return new ParseResult.Transformation(issue.ast, short(issue.actual), issue.kind, withShortActuals(issue.issue))
    case "Composite":
      return new ParseResult.Composite(
        issue.ast,
        short(issue.actual),
        Array.isArray(issue.issues)
          ? (issue.issues as ReadonlyArray<ParseResult.ParseIssue>).map(withShortActuals) as [
            ParseResult.ParseIssue,
            ...Array<ParseResult.ParseIssue>
          ]
          : withShortActuals(issue.issues as ParseResult.ParseIssue),
        issue.output
      )
  }
}
