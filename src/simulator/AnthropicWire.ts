/**
 * The Anthropic Messages API on the wire (`POST /v1/messages`): reading requests, writing messages, SSE events
 * and error bodies exactly as Anthropic does (see `docs/provider-wire.md`). Structured output arrives as a forced tool call,
 * so the reply is then a `tool_use` block whose input matches the tool's schema.
 *
 * @since 0.1.0
 */
import * as Core from "./Core.js"
import * as Faults from "./Faults.js"
import * as PromptCache from "./PromptCache.js"
import * as Wire from "./Wire.js"

/**
 * A request as read, with the forced tool when there is one.
 *
 * @since 0.1.0
 */
export interface AnthropicRequest extends Core.SimRequest {
  readonly toolName?: string | undefined
}

/**
 * An Anthropic error body.
 *
 * @since 0.1.0
 */
export const errorBody = (type: string, message: string, requestId: string) => ({
  type: "error",
  error: { type, message },
  request_id: requestId
})

const invalid = (message: string): Wire.WireError => ({
  status: 400,
  body: errorBody("invalid_request_error", message, "")
})

/**
 * The prefix a request marks as cacheable: its blocks in the order Anthropic caches them (tools, system, messages)
 * through the last one with `cache_control`, and that block's time to live (5 minutes unless it says `1h`).
 */
const breakpointOf = (body: Record<string, unknown>): PromptCache.Breakpoint | undefined => {
  const blocks: Array<unknown> = [
    ...(Array.isArray(body.tools) ? body.tools : []),
    ...(Array.isArray(body.system) ? body.system : body.system === undefined ? [] : [body.system]),
    ...(Array.isArray(body.messages)
      ? body.messages.flatMap((message) =>
        Wire.isRecord(message) && Array.isArray(message.content) ? message.content : [message]
      )
      : [])
  ]
  let marked = -1
  blocks.forEach((block, index) => {
    if (Wire.isRecord(block) && Wire.isRecord(block.cache_control)) marked = index
  })
  if (marked === -1) return undefined
  const control = (blocks[marked] as { cache_control: Record<string, unknown> }).cache_control
  const through = blocks.slice(0, marked + 1)
  const tools = Array.isArray(body.tools) ? body.tools.length : 0
  return {
    prefix: through.map((block) => JSON.stringify(block)).join("\n"),
    // Tools are not in the prompt's text, whose tokens are counted: the text is the rest.
    text: through.slice(tools).map((block) => Wire.textOf(block)).filter((t) => t !== "").join("\n\n"),
    ttlMillis: PromptCache.ttlMillisOf(control.ttl)
  }
}

/**
 * Reads a Messages API request body.
 *
 * @since 0.1.0
 */
export const parseRequest = (body: unknown): AnthropicRequest | Wire.WireError => {
  if (!Wire.isRecord(body)) return invalid("Request body must be a JSON object.")
  if (typeof body.model !== "string" || body.model === "") return invalid("model: Field required")
  if (!Array.isArray(body.messages) || body.messages.length === 0) return invalid("messages: Field required")
  if (typeof body.max_tokens !== "number" || !Number.isInteger(body.max_tokens) || body.max_tokens < 1) {
    return invalid("max_tokens: Field required")
  }
  // Anthropic's temperature runs from 0 to 1 (OpenAI's to 2).
  if (body.temperature !== undefined && (typeof body.temperature !== "number" || body.temperature > 1)) {
    return invalid("temperature: range: 0..1")
  }
  // Current Claude models refuse an assistant prefill (a conversation that ends with the assistant's turn).
  const last = body.messages[body.messages.length - 1]
  if (Wire.isRecord(last) && last.role === "assistant") {
    return invalid(
      "This model does not support assistant message prefill. The conversation must end with a user message."
    )
  }
  const forced = Wire.isRecord(body.tool_choice) && body.tool_choice.type === "tool"
    ? String(body.tool_choice.name)
    : undefined
  const tool = Array.isArray(body.tools)
    ? body.tools.find((t): t is Record<string, unknown> => Wire.isRecord(t) && t.name === forced)
    : undefined
  const prompt = [Wire.textOf(body.system), Wire.textOf(body.messages)].filter((t) => t !== "").join("\n\n")
  const breakpoint = breakpointOf(body)
  return {
    dialect: "anthropic",
    model: body.model,
    prompt,
    ...(breakpoint === undefined ? {} : { breakpoint }),
    maxOutputTokens: body.max_tokens,
    stream: body.stream === true,
    ...(tool !== undefined ? { jsonSchema: tool.input_schema, toolName: forced } : {})
  }
}

/**
 * The 401 Anthropic sends for a wrong key.
 *
 * @since 0.1.0
 */
export const invalidApiKey = (requestId: string): Wire.WireError => ({
  status: 401,
  body: errorBody("authentication_error", "invalid x-api-key", requestId)
})

const anthropicError = (
  status: number,
  type: string,
  message: string,
  requestId: string,
  headers: Record<string, string> = {},
  details?: Record<string, unknown>
): Wire.WireError => ({
  status,
  body: {
    type: "error",
    error: { type, message, ...(details === undefined ? {} : { details }) },
    request_id: requestId
  },
  headers
})

/**
 * A fault that has an HTTP answer, as Anthropic sends it; `undefined` for the faults that are not an HTTP
 * answer (hangs, resets, broken bodies and streams).
 *
 * @since 0.1.0
 */
export const faultError = (
  fault: Faults.Fault | Core.SimFault,
  request: Core.SimRequest,
  requestId: string
): Wire.WireError | undefined => {
  if ("_tag" in fault && fault._tag === "ModelNotFound") {
    return anthropicError(404, "not_found_error", `model: ${fault.model}`, requestId)
  }
  if ("_tag" in fault && fault._tag === "ContentPolicy") {
    // Anthropic has no safety system's 400 for a request (`declines` answers with a refusal instead); this is what
    // it sends when the output filter blocks an answer.
    return anthropicError(400, "invalid_request_error", "Output blocked by content filtering policy", requestId)
  }
  if ("_tag" in fault) {
    return anthropicError(
      400,
      "invalid_request_error",
      `prompt is too long: ${fault.promptTokens} tokens > ${fault.contextWindow} maximum`,
      requestId
    )
  }
  const retry = Faults.retryHeaders(fault)
  switch (fault.kind) {
    case "rate_limit": {
      // Anthropic names the limit reached in its message, its size written with thousands separators.
      const quota = fault.quota ?? { bucket: "requests", limit: 50 }
      return anthropicError(
        429,
        "rate_limit_error",
        `This request would exceed the rate limit for your organization of ${
          quota.limit.toLocaleString("en-US")
        } ${quota.bucket} per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.`,
        requestId,
        retry
      )
    }
    case "insufficient_quota":
      // As production sends it: a plain 400, told only by its message (a tier's spend cap is a 429 with
      // `details.error_code` `enforced_spend_limit_reached` instead).
      return anthropicError(
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
        requestId
      )
    case "request_too_large":
      return anthropicError(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.", requestId)
    case "server_error":
      return anthropicError(500, "api_error", "Internal server error", requestId, retry)
    case "bad_gateway":
      return anthropicError(502, "api_error", "Bad gateway", requestId, retry)
    case "unavailable":
      return anthropicError(503, "api_error", "Service unavailable", requestId, retry)
    case "overloaded":
      return anthropicError(529, "overloaded_error", "Overloaded", requestId, { "x-should-retry": "true", ...retry })
    case "gateway_timeout":
      return anthropicError(504, "timeout_error", "Request timed out", requestId, retry)
    case "auth":
      return invalidApiKey(requestId)
    case "invalid_request":
      return anthropicError(
        400,
        "invalid_request_error",
        "temperature: Input should be less than or equal to 1",
        requestId
      )
    case "context_length":
      return faultError(
        {
          _tag: "ContextTooLong",
          promptTokens: Core.contextWindowOf(request.model) + 8_656,
          contextWindow: Core.contextWindowOf(request.model)
        },
        request,
        requestId
      )
    case "stream_rate_limit":
      return request.stream ? undefined : faultError({ ...fault, kind: "rate_limit" }, request, requestId)
    case "stream_error_flat":
      return request.stream ? undefined : faultError({ ...fault, kind: "gateway_timeout" }, request, requestId)
    case "response_failed":
      return request.stream ? undefined : faultError({ ...fault, kind: "server_error" }, request, requestId)
    case "hang":
    case "stall":
    case "reset":
    case "malformed_json":
    case "truncated_sse":
    case "stream_error":
    case "cut_off":
      return undefined
  }
}

/**
 * The error event Anthropic sends mid-stream, after HTTP 200.
 *
 * @since 0.1.0
 */
export const streamErrorEvent = (fault: Faults.Fault): Wire.SseEvent => ({
  event: "error",
  data: {
    type: "error",
    error: fault.kind === "stream_rate_limit"
      ? { type: "rate_limit_error", message: "This request would exceed the rate limit for your organization." }
      : fault.kind === "stream_error"
      ? { type: "overloaded_error", message: "Overloaded" }
      : fault.kind === "stream_error_flat"
      ? { type: "timeout_error", message: "Request timed out" }
      : { type: "api_error", message: "Internal server error" }
  }
})

/**
 * A forced tool is answered with its `tool_use` block, whole or, cut off at the output limit, with what could be
 * parsed of its input (nothing); otherwise the reply is text.
 */
const contentBlock = (request: AnthropicRequest, reply: Core.SimReply, toolUseId: string) =>
  request.toolName !== undefined
    ? { type: "tool_use", id: toolUseId, name: request.toolName, input: reply.object ?? {} }
    : { type: "text", text: reply.text }

/** What Anthropic says of a refusal beside its stop reason (newer models; the category may be null). */
const stopDetails = {
  type: "refusal",
  category: null,
  explanation: "This request was declined because it could enable harm."
}

const stopReason = (request: AnthropicRequest, reply: Core.SimReply) =>
  reply.stopReason === "max_tokens" || reply.stopReason === "refusal"
    ? reply.stopReason
    : request.toolName !== undefined
    ? "tool_use"
    : "end_turn"

/**
 * Ids of one message.
 *
 * @since 0.1.0
 */
export interface MessageIds {
  readonly messageId: string
  readonly toolUseId: string
}

/** Anthropic's usage: `input_tokens` is only what was neither read from the cache nor written to it. */
const usage = (reply: Core.SimReply, outputTokens: number) => {
  const read = reply.cache?.readTokens ?? 0
  const written = reply.cache?.writtenTokens ?? 0
  return {
    input_tokens: Math.max(0, reply.inputTokens - read - written),
    cache_creation_input_tokens: written,
    cache_read_input_tokens: read,
    output_tokens: outputTokens,
    service_tier: "standard"
  }
}

/**
 * The message object of a non-streamed reply.
 *
 * @since 0.1.0
 */
export const messageObject = (request: AnthropicRequest, reply: Core.SimReply, ids: MessageIds) => ({
  id: ids.messageId,
  type: "message",
  role: "assistant",
  model: request.model,
  // A refusal comes as its stop reason, with what was written before it (a tool's input cannot be half an object:
  // none).
  content: reply.stopReason === "refusal"
    ? request.toolName === undefined && reply.writtenBeforeRefusal
      ? [{ type: "text", text: reply.writtenBeforeRefusal }]
      : []
    : [contentBlock(request, reply, ids.toolUseId)],
  stop_reason: stopReason(request, reply),
  ...(reply.stopReason === "refusal" ? { stop_details: stopDetails } : {}),
  stop_sequence: null,
  usage: usage(reply, reply.outputTokens)
})

/**
 * The SSE events of a streamed reply, in Anthropic's order.
 *
 * @since 0.1.0
 */
export const streamEvents = (
  request: AnthropicRequest,
  reply: Core.SimReply,
  ids: MessageIds
): Array<Wire.SseEvent> => {
  // A forced tool streams its input as JSON pieces, cut off where the output limit stopped it.
  const isTool = request.toolName !== undefined
  const start: Wire.SseEvent = {
    event: "message_start",
    data: {
      type: "message_start",
      message: { ...messageObject(request, reply, ids), content: [], stop_reason: null, usage: usage(reply, 1) }
    }
  }
  const end: Array<Wire.SseEvent> = [
    {
      event: "message_delta",
      data: {
        type: "message_delta",
        delta: {
          stop_reason: stopReason(request, reply),
          stop_sequence: null,
          ...(reply.stopReason === "refusal" ? { stop_details: stopDetails } : {})
        },
        usage: { output_tokens: reply.outputTokens }
      }
    },
    { event: "message_stop", data: { type: "message_stop" } }
  ]
  // A refusal: what was written before the streaming classifier stopped it (a tool's input cut off), then the stop.
  const text = reply.stopReason === "refusal" ? reply.writtenBeforeRefusal ?? "" : reply.text
  const events: Array<Wire.SseEvent> = [
    start,
    {
      event: "content_block_start",
      data: {
        type: "content_block_start",
        index: 0,
        content_block: isTool
          ? { type: "tool_use", id: ids.toolUseId, name: request.toolName, input: {} }
          : { type: "text", text: "" }
      }
    },
    { event: "ping", data: { type: "ping" } }
  ]
  for (const delta of Core.deltas(text)) {
    events.push({
      event: "content_block_delta",
      data: {
        type: "content_block_delta",
        index: 0,
        delta: isTool ? { type: "input_json_delta", partial_json: delta } : { type: "text_delta", text: delta }
      }
    })
  }
  events.push({ event: "content_block_stop", data: { type: "content_block_stop", index: 0 } }, ...end)
  return events
}
