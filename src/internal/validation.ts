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

/** The first issue of a parse error, as a `RequestValidationError` naming its field. */
export const validationError = (error: ParseResult.ParseError, root?: string): RequestValidationError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  return first === undefined
    ? new RequestValidationError({ field: root ?? "input", reason: "is invalid" })
    : new RequestValidationError({ field: formatPath(first.path, root), reason: first.message })
}
