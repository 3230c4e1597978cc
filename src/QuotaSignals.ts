/**
 * What one limiter learns about a provider key that every instance sharing the quota should know at once: a 429's
 * pause (until its retry-after) and the limits the 429 cut. The token buckets are shared through the limiter's store;
 * these are not bucket levels but decisions, so they travel as signals: each limiter joins, tells the others what it
 * learnt, and hears what they learnt.
 *
 * `layerMemory` joins the limiters of one process (several runtimes, or tests in virtual time);
 * `plot-engine/ProviderRateLimiter/Redis` provides it over Redis pub/sub for a fleet. A signal is a hint: one lost
 * (Redis away) costs the instances that missed it a 429 of their own, never an admission.
 *
 * @since 0.2.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/**
 * The per-minute limits in force on a key after a cut.
 *
 * @since 0.2.0
 * @category Models
 */
export const Limits = Schema.Struct({
  requestsPerMinute: Schema.Number,
  tokensPerMinute: Schema.optional(Schema.Number),
  inputTokensPerMinute: Schema.optional(Schema.Number),
  outputTokensPerMinute: Schema.optional(Schema.Number)
})

/**
 * @since 0.2.0
 * @category Models
 */
export interface Limits extends Schema.Schema.Type<typeof Limits> {}

/**
 * A provider 429 on `key` (a limiter key, `provider/model` or `deployment/model`): it is paused for
 * `pausedForMillis` from when the signal was sent, and, when the 429 cut them, `limits` are the limits in force.
 *
 * @since 0.2.0
 * @category Models
 */
export const Signal = Schema.Struct({
  key: Schema.String,
  pausedForMillis: Schema.Number.pipe(Schema.nonNegative()),
  limits: Schema.optional(Limits)
})

/**
 * @since 0.2.0
 * @category Models
 */
export interface Signal extends Schema.Schema.Type<typeof Signal> {}

/**
 * A signal on the wire (with the id of the member that sent it, so that it is not told back to itself), or
 * `undefined` for anything else.
 *
 * @since 0.2.0
 * @category Wire
 */
export const decodeMessage: (text: string) => { readonly from: string; readonly signal: Signal } | undefined = (() => {
  const decode = Schema.decodeUnknownOption(Schema.parseJson(Schema.Struct({ from: Schema.String, signal: Signal })))
  return (text) => Option.getOrUndefined(decode(text))
})()

/**
 * @since 0.2.0
 * @category Wire
 */
export const encodeMessage = (from: string, signal: Signal): string => JSON.stringify({ from, signal })

/**
 * A limiter's membership: what it tells the others.
 *
 * @since 0.2.0
 * @category Models
 */
export interface Member {
  /** Tells every other member; never fails, and never holds the caller (a signal lost is only a hint lost). */
  readonly tell: (signal: Signal) => void
}

/**
 * @since 0.2.0
 * @category Tags
 */
export class QuotaSignals extends Context.Tag("plot-engine/QuotaSignals")<QuotaSignals, {
  /** Joins for the scope's life: `hear` is called with every signal another member tells. */
  readonly join: (hear: (signal: Signal) => void) => Effect.Effect<Member, never, Scope.Scope>
}>() {}

/**
 * Members in this process: a signal is heard by the others at once, synchronously.
 *
 * @since 0.2.0
 * @category Constructors
 */
export const makeMemory: Effect.Effect<QuotaSignals["Type"]> = Effect.sync(() => {
  const members = new Set<{ readonly hear: (signal: Signal) => void }>()
  return QuotaSignals.of({
    join: (hear) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const self = { hear }
          members.add(self)
          return {
            member: self,
            tell: (signal: Signal) => {
              for (const other of members) if (other !== self) other.hear(signal)
            }
          }
        }),
        ({ member }) => Effect.sync(() => members.delete(member))
      )
  })
})

/**
 * @since 0.2.0
 * @category Layers
 */
export const layerMemory: Layer.Layer<QuotaSignals> = Layer.effect(QuotaSignals, makeMemory)
