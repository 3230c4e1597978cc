/**
 * Turning Schema parse errors into `RequestValidationError`s that name the first bad field.
 */
import * as ParseResult from "effect/ParseResult"
import { RequestValidationError } from "../Errors.js"

/** Renders a path such as `["characters", 3, "name"]` as `characters[3].name`. */
export const formatPath = (path: ReadonlyArray<PropertyKey>, root?: string): string => {
  let out = root ?? ""
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`
    else out += out === "" ? String(key) : `.${String(key)}`
  }
  return out === "" ? (root ?? "input") : out
}

/** The longest reason kept: Schema quotes the bad value, which may be megabytes long. */
const maxReasonLength = 300

/** Shortens the quoted values in a reason (a linear scan: a regex would recurse on megabytes), then the reason. */
const abbreviate = (reason: string): string => {
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

/** The first issue of a parse error, as a `RequestValidationError` naming its field. */
export const validationError = (error: ParseResult.ParseError, root?: string): RequestValidationError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  return first === undefined
    ? new RequestValidationError({ field: root ?? "input", reason: "is invalid" })
    : new RequestValidationError({ field: formatPath(first.path, root), reason: abbreviate(first.message) })
}
