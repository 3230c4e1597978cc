/**
 * Spans only when something reads them. Effect's default tracer builds every span in memory for nobody: a span
 * object, a copy of the fiber's context and of its `FiberRef`s per span (about 5 KB held by each request
 * queued in the limiter, and microseconds on every call). With a tracer installed (`Layer.setTracer`, the
 * OpenTelemetry layers, a test's in-memory tracer), these are plain `Effect.withSpan` and
 * `Effect.annotateCurrentSpan`; with the default one, they do nothing.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as Tracer from "effect/Tracer"
import type * as Timeout from "./timeout.js"

/** The tracer a fiber has when nobody installed one. */
const defaultTracer: Tracer.Tracer = Effect.runSync(Effect.tracer)

/**
 * `f(traced)`: in a span named `name` when a tracer is installed (`traced` is then `true`, and the spans and
 * attributes within are worth making), else as it is. One look at the tracer for a whole operation. What an untraced
 * operation calls that makes spans of its own runs with `tracerDisabled` (the engine sets it in a call's own fiber):
 * the clients' `LanguageModel` spans, the HTTP client's span per request with an attribute per header, and the
 * `traceparent` header it sends are then not made for nobody, and the operation pays for no `Effect.locally`.
 */
export const spanned = <A, E, R>(
  name: string,
  options: Tracer.SpanOptions,
  f: (traced: boolean) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  Effect.tracerWith((tracer) => tracer === defaultTracer ? f(false) : Effect.withSpan(f(true), name, options))

/** The tracer disabled, as a call's starting `FiberRef` (see `Timeout`). */
export const tracerDisabled: Timeout.Local<boolean> = [FiberRef.currentTracerEnabled, () => false]

/** `traced` when a tracer is installed, else `untraced` (only the one chosen is built). */
export const ifTraced = <A, E, R>(
  traced: () => Effect.Effect<A, E, R>,
  untraced: () => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => Effect.tracerWith((tracer) => tracer === defaultTracer ? untraced() : traced())
