/**
 * What both wire dialects share: error replies, SSE framing, and reading the text out of message content.
 *
 * @since 0.1.0
 */

/**
 * An error reply: status, JSON body, and extra headers.
 *
 * @since 0.1.0
 */
export interface WireError {
  readonly status: number
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * One server-sent event.
 *
 * @since 0.1.0
 */
export interface SseEvent {
  readonly event: string
  readonly data: unknown
}

/**
 * @since 0.1.0
 */
export const isWireError = (u: unknown): u is WireError => isRecord(u) && typeof u.status === "number" && "body" in u

/**
 * @since 0.1.0
 */
export const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/**
 * All the text in message content of either dialect: a string, content parts (`text`, `input_text`,
 * `output_text`), or messages holding them.
 *
 * @since 0.1.0
 */
export const textOf = (content: unknown): string => {
  if (typeof content === "string") return content
  if (Array.isArray(content)) return content.map(textOf).filter((t) => t !== "").join("\n\n")
  if (isRecord(content)) {
    if (typeof content.text === "string") return content.text
    if (content.content !== undefined) return textOf(content.content)
  }
  return ""
}

/**
 * Frames one event as SSE.
 *
 * @since 0.1.0
 */
export const encodeSse = (event: SseEvent): string => `event: ${event.event}\ndata: ${JSON.stringify(event.data)}\n\n`
