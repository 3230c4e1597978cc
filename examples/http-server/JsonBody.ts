/**
 * Request bodies as the example server reads them: JSON only, at most a limit (answered 413 in a way the client can
 * read), nested at most a few levels, and never quoted back in an error.
 */
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Effect from "effect/Effect"
import * as HttpErrors from "./HttpErrors.js"

/** The default body limit: a PlotRequest is at most a few tens of kilobytes. */
export const defaultMaxBytes = 1024 * 1024

/** After a body is refused, how much more is read and dropped so that the client, still sending, reads the 413. */
const drainBudgetBytes = 16 * 1024 * 1024

/** The deepest nesting accepted: a PlotRequest has none, and Schema's error messages recurse into values. */
export const maxDepth = 32

/** Drops what is left of a refused body, then cuts the connection past `drainBudgetBytes`. */
const drain = (source: NodeJS.ReadableStream & { destroy: () => void }) => {
  let dropped = 0
  source.on("data", (chunk: Buffer) => {
    dropped += chunk.length
    if (dropped > drainBudgetBytes) source.destroy()
  })
  source.resume()
}

/**
 * The body's bytes, at most `maxBytes`. Read from Node's request itself: the platform's limit
 * (`HttpIncomingMessage.withMaxBodySize`) destroys the request when it is exceeded, which resets the connection
 * before a 413 can be written. A declared `Content-Length` over the limit is refused without reading.
 */
const readBody = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<Uint8Array, HttpErrors.HttpError> => {
  const source = NodeHttpServerRequest.toIncomingMessage(request)
  if (Number(request.headers["content-length"]) > maxBytes) {
    drain(source)
    return Effect.fail(HttpErrors.HttpError.payloadTooLarge(maxBytes))
  }
  return Effect.async<Uint8Array, HttpErrors.HttpError>((resume) => {
    const chunks: Array<Buffer> = []
    let size = 0
    const stop = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= maxBytes) return void chunks.push(chunk)
      stop()
      drain(source)
      resume(Effect.fail(HttpErrors.HttpError.payloadTooLarge(maxBytes)))
    }
    const onEnd = () => {
      stop()
      resume(Effect.succeed(Buffer.concat(chunks)))
    }
    const onError = () => {
      stop()
      resume(Effect.fail(HttpErrors.HttpError.incompleteBody()))
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(stop)
  })
}

/** Whether a JSON text nests arrays and objects deeper than `max`, counted without parsing it. */
const nestsDeeperThan = (text: string, max: number): boolean => {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const char = text[i]
    if (inString) {
      if (char === "\\") i++
      else if (char === "\"") inString = false
    } else if (char === "\"") inString = true
    else if (char === "[" || char === "{") {
      if (++depth > max) return true
    } else if (char === "]" || char === "}") depth--
  }
  return false
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** A JSON text parsed, its error said without quoting the body back (V8's messages quote a piece of it). */
const parseJson = (bytes: Uint8Array): Effect.Effect<unknown, HttpErrors.HttpError> =>
  Effect.suspend(() => {
    let text: string
    try {
      text = utf8.decode(bytes)
    } catch {
      return Effect.fail(HttpErrors.HttpError.malformedJson("it is not UTF-8"))
    }
    if (text.trim() === "") return Effect.fail(HttpErrors.HttpError.malformedJson("the body is empty"))
    // Checked before parsing: JSON.parse copes, but a 100,000-deep value overflows the stack of whatever walks it.
    if (nestsDeeperThan(text, maxDepth)) return Effect.fail(HttpErrors.HttpError.tooDeep(maxDepth))
    try {
      return Effect.succeed(JSON.parse(text) as unknown)
    } catch (error) {
      const message = String(error)
      const position = /at position (\d+)/.exec(message)?.[1]
      return Effect.fail(HttpErrors.HttpError.malformedJson(
        position !== undefined
          ? `unexpected character at position ${position}`
          : message.includes("end of JSON input")
          ? "it ends before the value is complete"
          : "it does not parse"
      ))
    }
  })

/**
 * A request's body parsed as JSON, not yet checked against any schema: `application/json`, at most `maxBytes`.
 */
export const read = (
  request: HttpServerRequest.HttpServerRequest,
  maxBytes: number
): Effect.Effect<unknown, HttpErrors.HttpError> => {
  const mediaType = (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
  // Refused unread, the body is dropped as it comes, up to a budget: the client, still sending, reads the answer.
  if (mediaType !== "application/json") {
    drain(NodeHttpServerRequest.toIncomingMessage(request))
    return Effect.fail(HttpErrors.HttpError.unsupportedMediaType())
  }
  // A compressed body would be read as bytes that are not UTF-8 (a "malformed JSON" that is not the client's fault).
  const encoding = (request.headers["content-encoding"] ?? "identity").trim().toLowerCase()
  if (encoding !== "identity" && encoding !== "") {
    drain(NodeHttpServerRequest.toIncomingMessage(request))
    return Effect.fail(HttpErrors.HttpError.unsupportedEncoding(encoding.slice(0, 40)))
  }
  return Effect.flatMap(readBody(request, maxBytes), parseJson)
}
