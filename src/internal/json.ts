/**
 * Scanning text for JSON: where a bracketed value that starts at an index ends, string-aware, in one pass.
 */

/**
 * The index of the bracket that closes the one at `start` (`{`/`}` or `[`/`]`), skipping brackets inside JSON
 * strings; -1 when it never closes.
 */
export const closingIndex = (text: string, start: number): number => {
  const open = text[start]
  const close = open === "{" ? "}" : open === "[" ? "]" : undefined
  if (close === undefined) return -1
  let depth = 0
  let inString = false
  for (let i = start; i < text.length; i++) {
    const char = text[i]
    if (inString) {
      if (char === "\\") i++
      else if (char === "\"") inString = false
    } else if (char === "\"") inString = true
    else if (char === open) depth++
    else if (char === close && --depth === 0) return i
  }
  return -1
}
