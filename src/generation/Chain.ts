/**
 * The fallback chain of a generation: the chosen model, then the cheaper models of its provider, then the other
 * provider's model of the same tier. The first attempt runs alone; only if it fails is the rest built: an
 * `ExecutionPlan` with a step per model and one retry schedule shared by every step (so retries never multiply
 * across hops), with one attempt budget and one deadline over all of it. What the chain has done lives in a
 * `Ref` of `State`, which the outcome reads; the error channel carries the tagged errors alone.
 *
 * @internal
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as Errors from "../Errors.js"
import * as ModelCatalog from "../ModelCatalog.js"
import * as ModelSelector from "../ModelSelector.js"
import * as RetryPolicy from "../RetryPolicy.js"
import * as Attempt from "./Attempt.js"
import * as Engine from "./Engine.js"

/** What one generation's chain has done so far. */
export interface State {
  /** Attempts made, first attempts and retries alike (a model skipped for its open circuit is not one). */
  readonly attempts: number
  /** The place in the chain of the step entered last; -1 before the first. */
  readonly lastStep: number
  readonly lastError: RetryPolicy.RetryableError | undefined
  /** Rate-limit errors met, for the alerts. */
  readonly rateLimitErrors: number
  /** The context budget of a model's retry after it rejected a prompt as too long, by `Engine.modelKey`. */
  readonly reducedBudgets: ReadonlyMap<string, number>
  /** What happened on the way, for the result's warnings (a hop to another model). */
  readonly warnings: ReadonlyArray<string>
}

/** A chain that has done nothing yet. */
export const initial: State = {
  attempts: 0,
  lastStep: -1,
  lastError: undefined,
  rateLimitErrors: 0,
  reducedBudgets: new Map(),
  warnings: []
}

/** The step an `ExecutionPlan` step runs: provided by the plan, read by the planned attempt. */
class CurrentStep extends Context.Tag("plot-engine/generation/Chain/CurrentStep")<CurrentStep, Attempt.Step>() {}

/** The models a generation may call, in order: a pinned model alone, else the fallback chain of the chosen one. */
export const models = (engine: Engine.Engine, generation: Engine.Generation): ReadonlyArray<ModelCatalog.ModelInfo> =>
  generation.request.model === undefined
    ? ModelSelector.fallbackChain(generation.selection.model, {
      catalog: engine.catalog,
      providers: engine.providers.configured
    })
    : [generation.selection.model]

/**
 * Whether a failure lets a model run (again, or as the next hop): auth and invalid requests fail fast; an
 * exhausted quota moves to another provider only (the same provider's models share it); after a context-length
 * rejection, only the model itself (its smaller retry) or one with a bigger window may run.
 */
export const mayRunAfter = (
  catalog: ModelCatalog.Catalog,
  model: ModelCatalog.ModelInfo,
  error: RetryPolicy.RetryableError
): boolean => {
  switch (error._tag) {
    case "AuthError":
    case "InvalidRequestError":
      return false
    case "QuotaExhaustedError":
      return error.provider !== model.provider
    case "ContextTooLongError": {
      if (error.provider === model.provider && error.model === model.id) return true
      return Option.match(ModelCatalog.find(catalog, error.provider, error.model), {
        onNone: () => true,
        onSome: (failed) => model.contextWindow > failed.contextWindow
      })
    }
    default:
      return true
  }
}

/**
 * Runs the chain to its first success, or to the failure that ends it. `state` holds what the chain did, for
 * the outcome, however it ends.
 */
export const run = Effect.fnUntraced(function*(
  engine: Engine.Engine,
  generation: Engine.Generation,
  state: Ref.Ref<State>
) {
  const chain = models(engine, generation)
  const deadlineAt = (yield* Clock.currentTimeMillis) + Duration.toMillis(engine.policy.deadline)
  const enter = (step: Attempt.Step) =>
    Effect.zipRight(
      hopped(generation.emit, chain, state, step),
      Attempt.run(engine, generation, state, step, deadlineAt)
    )
  return yield* enter({ index: 0, model: chain[0]! }).pipe(
    Effect.catchAll((firstFailure) => afterFailure(engine, generation, state, chain, enter, firstFailure, deadlineAt))
  )
})

/**
 * Notes a hop to another model (a warning for the result, a `Fallback` event for the caller) when the step
 * entered is not the one tried last, and makes it the last.
 */
const hopped = (
  emit: Engine.Emit,
  chain: ReadonlyArray<ModelCatalog.ModelInfo>,
  state: Ref.Ref<State>,
  step: Attempt.Step
): Effect.Effect<void> =>
  Effect.flatMap(
    Ref.modify(state, (current) => {
      if (current.lastStep === -1 || current.lastStep === step.index) {
        return [undefined, { ...current, lastStep: step.index }] as const
      }
      const from = Engine.modelLabel(chain[current.lastStep]!)
      const to = Engine.modelLabel(step.model)
      const reason = current.lastError === undefined ? "failure" : Errors.errorType(current.lastError)
      return [
        { from, to, reason },
        {
          ...current,
          lastStep: step.index,
          warnings: [...current.warnings, `Fell back from ${from} to ${to} after ${reason}.`]
        }
      ] as const
    }),
    (hop) => (hop === undefined ? Effect.void : emit({ _tag: "Fallback", ...hop }))
  )

/**
 * The rest of the chain after the first attempt failed: retries and hops, until the attempt budget or the
 * deadline runs out. A hop starts at once (`Schedule.once` lets the previous step's failure through without a
 * delay), then follows the shared schedule; `while` decides whether a step may run at all after a failure.
 */
const afterFailure = Effect.fnUntraced(function*(
  engine: Engine.Engine,
  generation: Engine.Generation,
  state: Ref.Ref<State>,
  chain: ReadonlyArray<ModelCatalog.ModelInfo>,
  enter: (step: Attempt.Step) => Effect.Effect<Attempt.Success, RetryPolicy.RetryableError>,
  firstFailure: RetryPolicy.RetryableError,
  deadlineAt: number
) {
  const { policy } = engine
  const lastModel = Effect.map(Ref.get(state), (current) => chain[Math.max(0, current.lastStep)]!)
  const retries = yield* RetryPolicy.make(policy, Effect.map(Ref.get(state), (s) => s.attempts < policy.maxAttempts))
  const schedule = retries.pipe(Schedule.tapOutput((retry) => retrying(generation.emit, state, lastModel, retry)))
  const step = (model: ModelCatalog.ModelInfo, index: number) => ({
    provide: Layer.succeed(CurrentStep, { index, model }),
    schedule: index === 0 ? schedule : Schedule.andThen(Schedule.once, schedule),
    while: (error: RetryPolicy.RetryableError) => mayRun(engine, state, model, error)
  })
  const [first, ...rest] = chain
  const plan = ExecutionPlan.make(step(first!, 0), ...rest.map((model, i) => step(model, i + 1)))
  // The plan's first step starts from the first attempt's failure (that attempt has run), so that the schedule
  // decides on it exactly as if the plan had made that attempt itself.
  const replay = yield* Ref.make<RetryPolicy.RetryableError | undefined>(firstFailure)
  const planned = Effect.flatMap(
    Ref.getAndSet(replay, undefined),
    (failure) => (failure === undefined ? Effect.flatMap(CurrentStep, enter) : Effect.fail(failure))
  )
  const remaining = deadlineAt - (yield* Clock.currentTimeMillis)
  return yield* planned.pipe(
    Effect.withExecutionPlan(plan),
    Effect.timeout(Math.max(0, remaining)),
    Effect.catchTag(
      "TimeoutException",
      () => Effect.flatMap(lastModel, (model) => Effect.fail(Attempt.pastDeadline(policy, model)))
    )
  )
})

/** Whether a model may run after a failure: attempts left, its circuit not open, and the failure allowing it. */
const mayRun = (
  engine: Engine.Engine,
  state: Ref.Ref<State>,
  model: ModelCatalog.ModelInfo,
  error: RetryPolicy.RetryableError
): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    if ((yield* Ref.get(state)).attempts >= engine.policy.maxAttempts) return false
    if ((yield* engine.breaker.state(Engine.modelKey(model))) === "open") return false
    return mayRunAfter(engine.catalog, model, error)
  })

/** Tells the caller a failed attempt will be retried, on which model, why and when. */
const retrying = (
  emit: Engine.Emit,
  state: Ref.Ref<State>,
  lastModel: Effect.Effect<ModelCatalog.ModelInfo>,
  retry: RetryPolicy.Retry
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { error } = retry
    const on = "provider" in error ? { provider: error.provider, model: error.model } : yield* Effect.map(
      lastModel,
      (model) => ({ provider: model.provider, model: model.id })
    )
    const { attempts } = yield* Ref.get(state)
    yield* emit({
      _tag: "Retrying",
      ...on,
      errorType: Errors.errorType(error),
      message: Errors.userMessage(error),
      attempt: attempts + 1,
      delayMs: Duration.toMillis(retry.delay)
    })
  })
