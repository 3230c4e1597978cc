/**
 * Naming a Schema parse error's field and shortening its reason, for the errors that report bad input.
 */

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
