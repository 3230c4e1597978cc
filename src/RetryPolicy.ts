/**
 * How failures are retried: one `Schedule` per error type, with the table of `defaults`,
 * composed into one schedule that dispatches on the failure's tag, takes the delay the provider asked for
 * (`retry-after-ms`, `retry-after`, reset headers) as the floor of the next delay, obeys `x-should-retry`,
 * and stops (so the fallback chain hops on) when the provider asks for a wait above the cap.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ScheduleDecision from "effect/ScheduleDecision"
import * as ScheduleInterval from "effect/ScheduleInterval"
import * as ScheduleIntervals from "effect/ScheduleIntervals"
import * as SynchronizedRef from "effect/SynchronizedRef"
import type * as Errors from "./Errors.js"
import * as ConfigValues from "./internal/configValues.js"

/**
 * The failures a generation retries or hops on.
 *
 * @since 0.1.0
 * @category Models
 */
export type RetryableError = Errors.ProviderError | Errors.ResponseParseError

/**
 * @since 0.1.0
 * @category Models
 */
export type Tag = RetryableError["_tag"]

/**
 * One row of the retry table: how many retries, at what delay, doubled each time or not, with how much
 * random jitter added (0 to `jitter`, drawn from Effect's `Random`).
 *
 * @since 0.1.0
 * @category Models
 */
export interface Rule {
  readonly retries: number
  readonly delay: Duration.DurationInput
  readonly exponential: boolean
  readonly jitter: Duration.DurationInput
}

/**
 * A whole policy: a rule per failure, the cap on one delay, and the budgets of a generation.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Policy {
  readonly rules: Readonly<Record<Tag, Rule>>
  /** The longest delay slept; a provider asking for longer is not waited for: the chain hops on. */
  readonly maxDelay: Duration.DurationInput
  /** Attempts across the whole fallback chain, first attempts and retries alike. */
  readonly maxAttempts: number
  /** How long one attempt may take. */
  readonly attemptTimeout: Duration.DurationInput
  /** How long the whole generation may take, retries and hops included. */
  readonly deadline: Duration.DurationInput
  /**
   * How long a streamed answer may take to begin writing, from the call (unset or zero: no limit but the
   * attempt's). Not applied to reasoning models, which think in silence before they write.
   */
  readonly firstTokenTimeout?: Duration.DurationInput | undefined
  /**
   * How long a streamed answer that has begun writing may go without a part (keep-alives do not count: they carry
   * none). Unset or zero: no limit but the attempt's.
   */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /**
   * The least a streamed answer must write, once it has begun, until the first part of its outline can be shown:
   * `tokensPerSecond` over each `window` (tokens counted as four characters). A crawling stream is a
   * `TimeoutError` of kind `throughput`, and the route is left at once. Unset: no such limit.
   */
  readonly minThroughput?: {
    readonly tokensPerSecond: number
    readonly window: Duration.DurationInput
  } | undefined
  /**
   * What a refusal (`RefusalError`) leads to: `hop`, one try on the other provider's model of the same tier when
   * the chain has one (its safety systems differ); `fail`, the refusal ends the generation. Never a retry on the
   * model that declined.
   */
  readonly onRefusal?: "hop" | "fail" | undefined
}

const never: Rule = { retries: 0, delay: 0, exponential: false, jitter: 0 }

/**
 * The default table: rate limit 5 retries at 1 s x 2^n capped at 60 s plus up to 1 s of jitter; timeout 2 at
 * 2 s (a provider's or gateway's: the engine's own limits on a call leave the route instead); server 3 at 5 s;
 * network 3 at 3 s; context too long 1 at once (with a smaller prompt); none for auth, invalid request, quota and
 * refusals. A reply that cannot be parsed gets one corrective retry at once; an answer that ran out of output
 * tokens, one retry with a larger limit or less reasoning. A stream may wait 30 s for its first token, 20 s between
 * parts, and must write 4 tokens a second (over 10 s windows) until it can show something.
 *
 * @since 0.1.0
 * @category Defaults
 */
export const defaults: Policy = {
  rules: {
    RateLimitError: { retries: 5, delay: "1 second", exponential: true, jitter: "1 second" },
    TimeoutError: { retries: 2, delay: "2 seconds", exponential: false, jitter: 0 },
    ServerError: { retries: 3, delay: "5 seconds", exponential: false, jitter: 0 },
    NetworkError: { retries: 3, delay: "3 seconds", exponential: false, jitter: 0 },
    ContextTooLongError: { retries: 1, delay: 0, exponential: false, jitter: 0 },
    ResponseParseError: { retries: 1, delay: 0, exponential: false, jitter: 0 },
    IncompleteResponseError: { retries: 1, delay: 0, exponential: false, jitter: 0 },
    AuthError: never,
    InvalidRequestError: never,
    QuotaExhaustedError: never,
    ModelNotFoundError: never,
    // Declined: the same model declines the same request again (`onRefusal` decides whether another may try).
    RefusalError: never
  },
  onRefusal: "hop",
  maxDelay: "60 seconds",
  maxAttempts: 12,
  attemptTimeout: "60 seconds",
  deadline: "180 seconds",
  firstTokenTimeout: "30 seconds",
  idleTimeout: "20 seconds",
  minThroughput: { tokensPerSecond: 4, window: "10 seconds" }
}

/**
 * A policy with every rule changed by `f` (for example, short delays for a test against a local gateway).
 *
 * @since 0.1.0
 * @category Defaults
 */
export const mapRules = (policy: Policy, f: (rule: Rule, tag: Tag) => Rule): Policy => ({
  ...policy,
  rules: Object.fromEntries(
    Object.entries(policy.rules).map(([tag, rule]) => [tag, f(rule, tag as Tag)])
  ) as Record<Tag, Rule>
})

/**
 * The schedule of one rule: its delays (doubling or fixed), with jitter from Effect's `Random` (pin it in
 * tests with `Random.fixed`), capped at `maxDelay`, for `retries` recurrences. Its output is the delay.
 *
 * @since 0.1.0
 * @category Schedules
 */
export const forRule = (rule: Rule, maxDelay: Duration.DurationInput): Schedule.Schedule<Duration.Duration> => {
  const jitterMillis = Duration.toMillis(rule.jitter)
  const cap = Duration.decode(maxDelay)
  const base: Schedule.Schedule<unknown> = rule.exponential
    ? Schedule.exponential(rule.delay, 2)
    : Schedule.spaced(rule.delay)
  return base.pipe(
    Schedule.addDelayEffect(() =>
      jitterMillis > 0
        ? Effect.map(Random.next, (r) => Duration.millis(Math.floor(r * jitterMillis)))
        : Effect.succeed(Duration.zero)
    ),
    Schedule.modifyDelay((_, delay) => Duration.min(delay, cap)),
    Schedule.zipLeft(Schedule.recurs(rule.retries)),
    Schedule.delays
  )
}

/**
 * A decision to retry: the failure, the delay before the next attempt, and how many retries of this kind.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Retry {
  readonly error: RetryableError
  readonly delay: Duration.Duration
  /** Retries of this kind of failure so far, this one included. */
  readonly retry: number
}

type Counts = Partial<Record<Tag, { readonly state: unknown; readonly retries: number }>>

/**
 * The policy as one schedule over failures. Each kind of failure keeps its own schedule and count; a delay
 * the provider asked for is the floor of the next delay; `x-should-retry: false` stops, `x-should-retry: true`
 * retries a kind the table would not (on the server rule); a requested wait above `maxDelay` stops, so the
 * fallback chain can hop on at once. `allow` is consulted before every retry (the attempt budget).
 *
 * The counts live outside the schedule's own state, so one schedule serves every step of a fallback chain and
 * its retries never multiply across hops: a kind of failure gets its table's retries once per generation.
 *
 * @since 0.1.0
 * @category Schedules
 */
export const make = (
  policy: Policy,
  allow: Effect.Effect<boolean> = Effect.succeed(true)
): Effect.Effect<Schedule.Schedule<Retry, RetryableError>> =>
  Effect.map(SynchronizedRef.make<Counts>({}), (counts) => {
    const schedules = Object.fromEntries(
      Object.entries(policy.rules).map(([tag, rule]) => [tag, forRule(rule, policy.maxDelay)])
    ) as Record<Tag, Schedule.Schedule<Duration.Duration>>
    const maxDelayMillis = Duration.toMillis(policy.maxDelay)
    return Schedule.makeWithState<void, RetryableError, Retry>(
      undefined,
      (now, error) =>
        Effect.gen(function*() {
          const stop = [undefined, { error, delay: Duration.zero, retry: 0 }, ScheduleDecision.done] as const
          const shouldRetry = "shouldRetry" in error ? error.shouldRetry : undefined
          const requested = "retryAfterMs" in error ? error.retryAfterMs : undefined
          if (shouldRetry === false || (requested !== undefined && requested > maxDelayMillis)) return stop
          if (!(yield* allow)) return stop
          const tag: Tag = shouldRetry === true && policy.rules[error._tag].retries === 0 ? "ServerError" : error._tag
          return yield* SynchronizedRef.modifyEffect(counts, (all) =>
            Effect.gen(function*() {
              const current = all[tag] ?? { state: schedules[tag].initial, retries: 0 }
              const [next, , decision] = yield* schedules[tag].step(now, error, current.state)
              if (ScheduleDecision.isDone(decision)) return [stop, all] as const
              const delayMillis = Math.max(ScheduleIntervals.start(decision.intervals) - now, requested ?? 0)
              const retry = [
                undefined,
                { error, delay: Duration.millis(delayMillis), retry: current.retries + 1 },
                ScheduleDecision.continueWith(ScheduleInterval.after(now + delayMillis))
              ] as const
              return [retry, { ...all, [tag]: { state: next, retries: current.retries + 1 } }] as const
            }))
        })
    )
  })

/**
 * The default policy with its budgets from the environment: `PLOT_ENGINE_MAX_ATTEMPTS`,
 * `PLOT_ENGINE_ATTEMPT_TIMEOUT`, `PLOT_ENGINE_DEADLINE`, `PLOT_ENGINE_MAX_RETRY_DELAY`,
 * `PLOT_ENGINE_FIRST_TOKEN_TIMEOUT` and `PLOT_ENGINE_IDLE_TIMEOUT` (durations such as "60 seconds"),
 * `PLOT_ENGINE_MIN_TOKENS_PER_SECOND` (a stream's least throughput before it can show something; 0 for none) and
 * `PLOT_ENGINE_ON_REFUSAL` (`hop` or `fail`).
 *
 * @since 0.1.0
 * @category Configuration
 */
export const config: Config.Config<Policy> = Config.all({
  maxAttempts: ConfigValues.integerAtLeast("PLOT_ENGINE_MAX_ATTEMPTS").pipe(Config.withDefault(defaults.maxAttempts)),
  attemptTimeout: ConfigValues.duration("PLOT_ENGINE_ATTEMPT_TIMEOUT", "refused").pipe(
    Config.withDefault(Duration.decode(defaults.attemptTimeout))
  ),
  deadline: ConfigValues.duration("PLOT_ENGINE_DEADLINE", "refused").pipe(
    Config.withDefault(Duration.decode(defaults.deadline))
  ),
  maxDelay: ConfigValues.duration("PLOT_ENGINE_MAX_RETRY_DELAY", "allowed").pipe(
    Config.withDefault(Duration.decode(defaults.maxDelay))
  ),
  firstTokenTimeout: ConfigValues.duration("PLOT_ENGINE_FIRST_TOKEN_TIMEOUT", "allowed").pipe(
    Config.withDefault(Duration.decode(defaults.firstTokenTimeout!))
  ),
  idleTimeout: ConfigValues.duration("PLOT_ENGINE_IDLE_TIMEOUT", "allowed").pipe(
    Config.withDefault(Duration.decode(defaults.idleTimeout!))
  ),
  minThroughput: Config.number("PLOT_ENGINE_MIN_TOKENS_PER_SECOND").pipe(
    Config.validate({ message: "a number of tokens a second, 0 or more", validation: (n) => n >= 0 }),
    Config.map((tokensPerSecond) =>
      tokensPerSecond === 0 ? undefined : { tokensPerSecond, window: defaults.minThroughput!.window }
    ),
    Config.withDefault(defaults.minThroughput)
  ),
  onRefusal: Config.literal("hop", "fail")("PLOT_ENGINE_ON_REFUSAL").pipe(Config.withDefault(defaults.onRefusal))
}).pipe(Config.map((budgets) => ({ ...defaults, ...budgets })))
