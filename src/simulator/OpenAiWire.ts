/**
 * The OpenAI Responses API on the wire (`POST /v1/responses`): reading requests, writing responses, SSE
 * events and error bodies exactly as OpenAI does (see `docs/provider-wire.md`).
 *
 * @since 0.1.0
 */
import * as Core from "./Core.js"
import * as Faults from "./Faults.js"
import * as Wire from "./Wire.js"

/**
 * A request as read, with the output format to echo back.
 *
 * @since 0.1.0
 */
export interface OpenAiRequest extends Core.SimRequest {
  readonly textFormat: unknown
  /** The function the request forces (`tool_choice`), whose `parameters` the reply's arguments match. */
  readonly toolName?: string | undefined
}

/**
 * Reads a Responses API request body.
 *
 * @since 0.1.0
 */
export const parseRequest = (body: unknown): OpenAiRequest | Wire.WireError => {
  if (!Wire.isRecord(body)) return invalid("Request body must be a JSON object.", null)
  if (typeof body.model !== "string" || body.model === "") {
    return invalid("Missing required parameter: 'model'.", "model")
  }
  if (body.input === undefined) return invalid("Missing required parameter: 'input'.", "input")
  const maxOutputTokens = body.max_output_tokens ?? 4_096
  if (typeof maxOutputTokens !== "number" || !Number.isInteger(maxOutputTokens) || maxOutputTokens < 16) {
    return invalid(
      "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16.",
      "max_output_tokens"
    )
  }
  const format = Wire.isRecord(body.text) && Wire.isRecord(body.text.format) ? body.text.format : undefined
  const prompt = [Wire.textOf(body.instructions), Wire.textOf(body.input)].filter((t) => t !== "").join("\n\n")
  const effort = Wire.isRecord(body.reasoning) && typeof body.reasoning.effort === "string"
    ? body.reasoning.effort
    : undefined
  const tool = forcedFunction(body)
  return {
    dialect: "openai",
    model: body.model,
    prompt,
    maxOutputTokens,
    stream: body.stream === true,
    textFormat: format ?? { type: "text" },
    ...(format?.type === "json_schema" ? { jsonSchema: format.schema } : {}),
    ...(tool === undefined ? {} : { jsonSchema: tool.parameters, toolName: tool.name }),
    ...(effort === undefined ? {} : { reasoningEffort: effort })
  }
}

/** The function tool a request forces: named by `tool_choice`, or the only one with `tool_choice: "required"`. */
const forcedFunction = (body: Record<string, unknown>) => {
  const functions = Array.isArray(body.tools)
    ? body.tools.filter((t): t is Record<string, unknown> => Wire.isRecord(t) && t.type === "function")
    : []
  const choice = body.tool_choice
  const name = Wire.isRecord(choice) && choice.type === "function"
    ? choice.name
    : choice === "required" && functions.length === 1
    ? functions[0]!.name
    : undefined
  const tool = functions.find((t) => t.name === name)
  return tool === undefined || typeof tool.name !== "string"
    ? undefined
    : { name: tool.name, parameters: tool.parameters }
}

const invalid = (message: string, param: string | null): Wire.WireError => ({
  status: 400,
  body: { error: { message, type: "invalid_request_error", param, code: null } }
})

/**
 * The 401 OpenAI sends for a wrong key; it echoes the key's first and last characters only.
 *
 * @since 0.1.0
 */
export const invalidApiKey = (presented: string | undefined): Wire.WireError => {
  const masked = presented === undefined || presented.length < 8
    ? "(none)"
    : `${presented.slice(0, 3)}${"*".repeat(Math.min(presented.length - 7, 20))}${presented.slice(-4)}`
  return {
    status: 401,
    body: {
      error: {
        message:
          `Incorrect API key provided: ${masked}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        type: "invalid_request_error",
        param: null,
        code: "invalid_api_key"
      }
    }
  }
}

const openAiError = (
  status: number,
  type: string,
  code: string | null,
  message: string,
  headers: Record<string, string> = {},
  param: string | null = null
): Wire.WireError => ({
  status,
  body: { error: { message, type, param, code } },
  headers
})

const html = (status: number, title: string): Wire.WireError => ({
  status,
  body:
    `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n</body>\r\n</html>\r\n`,
  headers: { "content-type": "text/html" }
})

/**
 * A fault that has an HTTP answer, as OpenAI (or the gateway in front of it) sends it; `undefined` for the
 * faults that are not an HTTP answer (hangs, resets, broken bodies and streams).
 *
 * @since 0.1.0
 */
export const faultError = (
  fault: Faults.Fault | Core.SimFault,
  request: Core.SimRequest
): Wire.WireError | undefined => {
  if ("_tag" in fault && fault._tag === "ModelNotFound") {
    return openAiError(
      404,
      "invalid_request_error",
      "model_not_found",
      `The model \`${fault.model}\` does not exist or you do not have access to it.`,
      {},
      null
    )
  }
  if ("_tag" in fault && fault._tag === "ContentPolicy") {
    return openAiError(
      400,
      "invalid_request_error",
      "content_policy_violation",
      "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
      {},
      null
    )
  }
  if ("_tag" in fault) {
    return openAiError(
      400,
      "invalid_request_error",
      "context_length_exceeded",
      `This model's maximum context length is ${fault.contextWindow} tokens. However, your messages resulted in ${fault.promptTokens} tokens. Please reduce the length of the messages.`,
      {},
      "input"
    )
  }
  const retry = Faults.retryHeaders(fault)
  switch (fault.kind) {
    case "rate_limit": {
      const seconds = ((fault.retryAfterMs ?? 1_000) / 1_000).toFixed(3).replace(/\.?0+$/, "")
      const quota = fault.quota ?? { bucket: "requests", limit: 60, used: 60, requested: 1 }
      const tokens = quota.bucket !== "requests"
      const on = tokens ? "tokens per min (TPM)" : "requests per min (RPM)"
      return openAiError(
        429,
        tokens ? "tokens" : "requests",
        "rate_limit_exceeded",
        `Rate limit reached for ${request.model} in organization org-simulator on ${on}: Limit ${quota.limit}, Used ${quota.used}, Requested ${quota.requested}. Please try again in ${seconds}s. Visit https://platform.openai.com/account/rate-limits to learn more.`,
        retry
      )
    }
    case "insufficient_quota":
      return openAiError(
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
        retry
      )
    case "request_too_large":
      return openAiError(
        429,
        "tokens",
        "rate_limit_exceeded",
        `Request too large for ${request.model} in organization org-simulator on tokens per min (TPM): Limit ${
          fault.quota?.limit ?? 30_000
        }, Requested ${
          fault.quota?.requested ?? 30_000 + request.maxOutputTokens
        }. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.`,
        retry
      )
    case "server_error":
      return openAiError(
        500,
        "server_error",
        null,
        "The server had an error processing your request. Sorry about that! You can retry your request, or contact us through our help center if you keep seeing this error.",
        retry
      )
    case "bad_gateway":
      return html(502, "502 Bad Gateway")
    case "unavailable":
      return openAiError(
        503,
        "server_error",
        null,
        "The engine is currently overloaded, please try again later.",
        retry
      )
    case "overloaded":
      return openAiError(529, "server_error", null, "Overloaded", { "x-should-retry": "true", ...retry })
    case "gateway_timeout":
      return html(504, "504 Gateway Time-out")
    case "auth":
      return invalidApiKey(undefined)
    case "invalid_request":
      return openAiError(
        400,
        "invalid_request_error",
        "invalid_value",
        "Invalid value for 'temperature': expected a number between 0 and 2.",
        {},
        "temperature"
      )
    case "context_length":
      return faultError({
        _tag: "ContextTooLong",
        promptTokens: Core.contextWindowOf(request.model) + 1_000,
        contextWindow: Core.contextWindowOf(request.model)
      }, request)
    case "stream_rate_limit":
      return request.stream ? undefined : faultError({ ...fault, kind: "rate_limit" }, request)
    case "stream_error_flat":
    case "response_failed":
      return request.stream ? undefined : faultError({ ...fault, kind: "server_error" }, request)
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
 * The error event OpenAI sends mid-stream, after HTTP 200 (`docs/provider-wire.md`).
 *
 * @since 0.1.0
 */
export const streamErrorEvent = (
  fault: Faults.Fault,
  request: Core.SimRequest,
  sequence: number,
  response: () => Record<string, unknown>
): Wire.SseEvent => {
  switch (fault.kind) {
    case "stream_rate_limit": {
      const seconds = ((fault.retryAfterMs ?? 1_500) / 1_000).toFixed(3).replace(/\.?0+$/, "")
      return {
        event: "error",
        data: {
          type: "error",
          sequence_number: sequence,
          error: {
            type: "tokens",
            code: "rate_limit_exceeded",
            message:
              `Rate limit reached for ${request.model} in organization org-simulator on tokens per min (TPM): Limit 30000, Used 29000, Requested 1600. Please try again in ${seconds}s. Visit https://platform.openai.com/account/rate-limits to learn more.`,
            param: null
          }
        }
      }
    }
    case "stream_error_flat":
      return {
        event: "error",
        data: {
          type: "error",
          sequence_number: sequence,
          code: "server_error",
          message: "The server had an error while processing your request. Sorry about that!",
          param: null
        }
      }
    case "response_failed":
      return {
        event: "response.failed",
        data: {
          type: "response.failed",
          sequence_number: sequence,
          response: {
            ...response(),
            status: "failed",
            error: { code: "server_error", message: "The model failed to generate a response." }
          }
        }
      }
    default:
      return nestedServerError(sequence)
  }
}

const nestedServerError = (sequence: number): Wire.SseEvent => ({
  event: "error",
  data: {
    type: "error",
    sequence_number: sequence,
    error: {
      type: "server_error",
      code: "server_error",
      message: "The server had an error while processing your request. Sorry about that!",
      param: null
    }
  }
})

/**
 * Ids of one response.
 *
 * @since 0.1.0
 */
export interface ResponseIds {
  readonly responseId: string
  readonly messageId: string
  readonly createdAt: number
}

const message = (reply: Core.SimReply, ids: ResponseIds, status: "in_progress" | "completed") => ({
  id: ids.messageId,
  type: "message",
  status,
  role: "assistant",
  content: status === "in_progress" ? [] : [contentOf(reply, reply.text)]
})

/** The message's content part: the text, or the refusal a declining model writes instead (even with a forced tool). */
const contentOf = (reply: Core.SimReply, text: string) =>
  reply.stopReason === "refusal" ? { type: "refusal", refusal: text } : outputText(text)

const functionCall = (
  request: OpenAiRequest,
  reply: Core.SimReply,
  ids: ResponseIds,
  status: "in_progress" | "completed"
) => ({
  id: `fc_${ids.messageId.slice(4)}`,
  type: "function_call",
  // Cut off at the output limit, the call is incomplete, its arguments whatever was written.
  status: status === "completed" && reply.stopReason === "max_tokens" ? "incomplete" : status,
  call_id: `call_${ids.messageId.slice(4)}`,
  name: request.toolName,
  arguments: status === "in_progress" ? "" : reply.text
})

/** What a response holds: nothing when reasoning used the whole budget, else the function call or the message. */
const outputOf = (request: OpenAiRequest, reply: Core.SimReply, ids: ResponseIds) =>
  reply.text === "" && reply.stopReason === "max_tokens"
    ? []
    : [
      request.toolName === undefined || reply.stopReason === "refusal"
        ? message(reply, ids, "completed")
        : functionCall(request, reply, ids, "completed")
    ]

const outputText = (text: string) => ({ type: "output_text", text, annotations: [], logprobs: [] })

/**
 * The response object, in progress (no output yet) or final.
 *
 * @since 0.1.0
 */
export const responseObject = (
  request: OpenAiRequest,
  reply: Core.SimReply,
  ids: ResponseIds,
  state: "in_progress" | "final"
) => {
  const incomplete = reply.stopReason === "max_tokens"
  return {
    id: ids.responseId,
    object: "response",
    created_at: ids.createdAt,
    status: state === "in_progress" ? "in_progress" : incomplete ? "incomplete" : "completed",
    background: false,
    error: null,
    incomplete_details: state === "final" && incomplete ? { reason: "max_output_tokens" } : null,
    instructions: null,
    max_output_tokens: request.maxOutputTokens,
    model: request.model,
    output: state === "in_progress" ? [] : outputOf(request, reply, ids),
    parallel_tool_calls: true,
    previous_response_id: null,
    reasoning: { effort: request.reasoningEffort ?? null, summary: null },
    service_tier: "default",
    store: true,
    temperature: 1,
    text: { format: request.textFormat, verbosity: "medium" },
    tool_choice: request.toolName === undefined ? "auto" : { type: "function", name: request.toolName },
    tools: [],
    top_p: 1,
    truncation: "disabled",
    usage: state === "in_progress" ? null : {
      input_tokens: reply.inputTokens,
      input_tokens_details: { cached_tokens: reply.cache?.readTokens ?? 0 },
      output_tokens: reply.outputTokens,
      output_tokens_details: { reasoning_tokens: reply.reasoningTokens },
      total_tokens: reply.inputTokens + reply.outputTokens
    },
    user: null,
    metadata: {}
  }
}

/**
 * The SSE events of a streamed response, in OpenAI's order, each with its `sequence_number`.
 *
 * @since 0.1.0
 */
export const streamEvents = (request: OpenAiRequest, reply: Core.SimReply, ids: ResponseIds): Array<Wire.SseEvent> => {
  const events: Array<Record<string, unknown>> = []
  events.push({ type: "response.created", response: responseObject(request, reply, ids, "in_progress") })
  events.push({ type: "response.in_progress", response: responseObject(request, reply, ids, "in_progress") })
  const written = !(reply.text === "" && reply.stopReason === "max_tokens")
  if (written && request.toolName !== undefined && reply.stopReason !== "refusal") {
    const call = functionCall(request, reply, ids, "in_progress")
    const item = { item_id: call.id, output_index: 0 }
    events.push({ type: "response.output_item.added", output_index: 0, item: call })
    for (const delta of Core.deltas(reply.text)) {
      events.push({ type: "response.function_call_arguments.delta", ...item, delta })
    }
    events.push({ type: "response.function_call_arguments.done", ...item, arguments: reply.text })
    events.push({
      type: "response.output_item.done",
      output_index: 0,
      item: functionCall(request, reply, ids, "completed")
    })
  } else if (written) {
    const item = { item_id: ids.messageId, output_index: 0, content_index: 0 }
    events.push({ type: "response.output_item.added", output_index: 0, item: message(reply, ids, "in_progress") })
    events.push({ type: "response.content_part.added", ...item, part: contentOf(reply, "") })
    if (reply.stopReason === "refusal") {
      for (const delta of Core.deltas(reply.text)) events.push({ type: "response.refusal.delta", ...item, delta })
      events.push({ type: "response.refusal.done", ...item, refusal: reply.text })
    } else {
      for (const delta of Core.deltas(reply.text)) {
        events.push({ type: "response.output_text.delta", ...item, delta, logprobs: [] })
      }
      events.push({ type: "response.output_text.done", ...item, text: reply.text, logprobs: [] })
    }
    events.push({ type: "response.content_part.done", ...item, part: contentOf(reply, reply.text) })
    events.push({ type: "response.output_item.done", output_index: 0, item: message(reply, ids, "completed") })
  }
  events.push({
    type: reply.stopReason === "max_tokens" ? "response.incomplete" : "response.completed",
    response: responseObject(request, reply, ids, "final")
  })
  return events.map((data, sequence) => ({ event: data.type as string, data: { ...data, sequence_number: sequence } }))
}
