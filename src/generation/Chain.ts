/**
 * The fallback chain of a generation: the chosen model, then the cheaper models of its provider, then the other
 * provider's model of the same tier. The first attempt runs alone; only if it fails is the rest built: an
 * `ExecutionPlan` with a step per model and one retry schedule shared by every step (so retries never multiply
 * across hops), with one attempt budget and one deadline over all of it. What the chain has done lives in a
 * `Ref` of `State`, which the outcome reads; the error channel carries the tagged errors alone.
 *
 * @internal
 */
import type * as Arr from "effect/Array"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionPlan from "effect/ExecutionPlan"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as ModelCatalog from "../ModelCatalog.js"
import * as ModelSelector from "../ModelSelector.js"
import type * as PromptBuilder from "../PromptBuilder.js"
import * as RetryPolicy from "../RetryPolicy.js"
import * as Attempt from "./Attempt.js"
import * as Engine from "./Engine.js"

/** What one generation's chain has done so far. */
export interface State {
  /** Attempts made, first attempts and retries alike (a model skipped for its open circuit is not one). */
  readonly attempts: number
  /** The step entered last; `undefined` before the first. */
  readonly lastStep: Attempt.Step | undefined
  /**
   * Why the last step failed, as a `Fallback` tells it: the error's type (`Errors.errorType`), or `circuit_open` when
   * it was skipped for its open circuit.
   */
  readonly lastFailure: string | undefined
  /** The deployments of a model (by `Engine.routeKey`) that failed in this generation: the next call goes elsewhere. */
  readonly failedRoutes: ReadonlySet<string>
  /** Of those, the ones that ran out of one of the engine's own time limits: never called again in the generation. */
  readonly silentRoutes: ReadonlySet<string>
  /** Rate-limit errors met, for the alerts. */
  readonly rateLimitErrors: number
  /** Refusals met: the first may hop to the other provider, a second ends the chain. */
  readonly refusals: number
  /** The context budget of a model's retry after it rejected a prompt as too long, by `Engine.modelKey`. */
  readonly reducedBudgets: ReadonlyMap<string, number>
  /** The output budget of a model's retry after its answer ran out of output tokens, by `Engine.modelKey`. */
  readonly outputBudgets: ReadonlyMap<string, PromptBuilder.OutputBudget>
  /** What happened on the way, for the result's warnings (a hop to another model). */
  readonly warnings: ReadonlyArray<string>
  /** Every attempt the provider billed, in order, failed ones included. */
  readonly billing: ReadonlyArray<Domain.AttemptCost>
}

/** A chain that has done nothing yet. */
export const initial: State = {
  attempts: 0,
  lastStep: undefined,
  lastFailure: undefined,
  failedRoutes: new Set(),
  silentRoutes: new Set(),
  rateLimitErrors: 0,
  refusals: 0,
  reducedBudgets: new Map(),
  outputBudgets: new Map(),
  warnings: [],
  billing: []
}

/** The step an `ExecutionPlan` step runs: provided by the plan, read by the planned attempt. */
class CurrentStep extends Context.Tag("plot-engine/generation/Chain/CurrentStep")<CurrentStep, Attempt.Step>() {}

/** One run of a chain: what its steps share. */
interface ChainRun {
  readonly engine: Engine.Engine
  readonly generation: Engine.Generation
  readonly state: Ref.Ref<State>
  readonly models: Arr.NonEmptyReadonlyArray<ModelCatalog.ModelInfo>
  readonly deadlineAt: number
}

/** The models a generation may call, in order: a pinned model alone, else the fallback chain of the chosen one. */
export const models = (
  engine: Engine.Engine,
  generation: Engine.Generation
): Arr.NonEmptyReadonlyArray<ModelCatalog.ModelInfo> =>
  generation.request.model === undefined
    ? ModelSelector.fallbackChain(generation.selection.model, {
      catalog: engine.catalog,
      providers: engine.providers.configured
    })
    : [generation.selection.model]

/**
 * Whether a failure lets a model run (again, or as the next hop): auth and invalid requests fail fast; an
 * exhausted quota moves to another provider only (the same provider's models share it); a model the provider does
 * not serve is not tried again, another is; a refusal moves to the other provider's model of the same tier only;
 * after a context-length rejection, only the model itself (its smaller retry) or one with a bigger window may run.
 */
export const mayRunAfter = (
  catalog: ModelCatalog.Catalog,
  model: ModelCatalog.ModelInfo,
  error: RetryPolicy.RetryableError
): boolean => {
  // The provider said to try again (`x-should-retry: true`): the model that failed may be called again, whatever
  // the kind (the retry policy then retries it as a server error).
  if (
    "shouldRetry" in error && error.shouldRetry === true && error.provider === model.provider &&
    error.model === model.id
  ) {
    return true
  }
  switch (error._tag) {
    case "AuthError":
    case "InvalidRequestError":
      return false
    case "QuotaExhaustedError":
      return error.provider !== model.provider
    case "ModelNotFoundError":
      return error.provider !== model.provider || error.model !== model.id
    case "RefusalError":
      // Not the provider that declined (its models share its safety systems), and no lesser model.
      return error.provider !== model.provider &&
        Option.match(ModelCatalog.find(catalog, error.provider, error.model), {
          onNone: () => true,
          onSome: (declined) => declined.tier === model.tier
        })
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
export const run = (
  engine: Engine.Engine,
  generation: Engine.Generation,
  state: Ref.Ref<State>
): Effect.Effect<Attempt.Success, RetryPolicy.RetryableError> =>
  Engine.withNow((now) => {
    const chain: ChainRun = {
      engine,
      generation,
      state,
      models: models(engine, generation),
      deadlineAt: now + Duration.toMillis(engine.policy.deadline)
    }
    // The first step: no step before it, so no hop to note.
    const first: Attempt.Step = { index: 0, model: chain.models[0] }
    return Effect.zipRight(
      Ref.update(state, (current) => ({ ...current, lastStep: first })),
      Attempt.run(engine, generation, state, first, chain.deadlineAt)
    ).pipe(Effect.catchAll((firstFailure) => retryAndHop(chain, firstFailure)))
  })

/** Enters a step: notes a hop when it is another model than the last, then makes the attempt. */
const enter = (chain: ChainRun, step: Attempt.Step): Effect.Effect<Attempt.Success, RetryPolicy.RetryableError> =>
  Effect.zipRight(
    noteHop(chain, step),
    Attempt.run(chain.engine, chain.generation, chain.state, step, chain.deadlineAt)
  )

/**
 * When the step entered is not the one tried last: a warning for the result and a `Fallback` event for the
 * caller. Either way the step becomes the last.
 */
const noteHop = (chain: ChainRun, step: Attempt.Step): Effect.Effect<void> =>
  Effect.flatMap(
    Ref.modify(chain.state, (current) => {
      const last = current.lastStep
      if (last === undefined || last.index === step.index) {
        return [undefined, { ...current, lastStep: step }] as const
      }
      const from = Engine.modelLabel(last.model)
      const to = Engine.modelLabel(step.model)
      const reason = current.lastFailure ?? "failure"
      return [
        { from, to, reason },
        {
          ...current,
          lastStep: step,
          warnings: [...current.warnings, `Fell back from ${from} to ${to} after ${reason}.`]
        }
      ] as const
    }),
    (hop) => (hop === undefined ? Effect.void : chain.generation.emit({ _tag: "Fallback", ...hop }))
  )

/** The model of the step entered last (the first before any). */
const lastModel = (chain: ChainRun): Effect.Effect<ModelCatalog.ModelInfo> =>
  Effect.map(Ref.get(chain.state), (current) => current.lastStep?.model ?? chain.models[0])

/**
 * The rest of the chain after the first attempt failed: retries and hops, until the attempt budget or the
 * deadline runs out. A hop starts at once (`Schedule.once` lets the previous step's failure through without a
 * delay), then follows the shared schedule; `while` decides whether a step may run at all after a failure.
 */
const retryAndHop = Effect.fnUntraced(function*(chain: ChainRun, firstFailure: RetryPolicy.RetryableError) {
  const { engine: { policy }, state } = chain
  const retries = yield* RetryPolicy.make(policy, Effect.map(Ref.get(state), (s) => s.attempts < policy.maxAttempts))
  const step = (model: ModelCatalog.ModelInfo, index: number) => {
    // Announced only when the same model will be called again: the schedule's last output (it stops) and a retry
    // the step's `while` refuses are a hop or the end, which a `Fallback` or the outcome tells.
    const schedule = retries.pipe(Schedule.tapOutput((retry) =>
      retry.retry === 0
        ? Effect.void
        : Effect.whenEffect(announceRetry(chain, model, retry), mayTry(chain, model, retry.error))
    ))
    return {
      provide: Layer.succeed(CurrentStep, { index, model }),
      schedule: index === 0 ? schedule : Schedule.andThen(Schedule.once, schedule),
      while: (error: RetryPolicy.RetryableError) => mayTry(chain, model, error)
    }
  }
  const [first, ...rest] = chain.models
  const plan = ExecutionPlan.make(step(first, 0), ...rest.map((model, i) => step(model, i + 1)))
  // The plan's first step starts from the first attempt's failure (that attempt has run), so that the schedule
  // decides on it exactly as if the plan had made that attempt itself.
  const replay = yield* Ref.make<RetryPolicy.RetryableError | undefined>(firstFailure)
  const planned = Effect.flatMap(
    Ref.getAndSet(replay, undefined),
    (
      failure
    ) => (failure === undefined
      ? Effect.flatMap(CurrentStep, (current) => enter(chain, current))
      : Effect.fail(failure))
  )
  const remaining = chain.deadlineAt - (yield* Clock.currentTimeMillis)
  return yield* planned.pipe(
    Effect.withExecutionPlan(plan),
    Effect.timeout(Math.max(0, remaining)),
    Effect.catchTag(
      "TimeoutException",
      () => Effect.flatMap(lastModel(chain), (model) => Effect.fail(Attempt.pastDeadline(policy, model)))
    )
  )
})

/** Whether a model may be tried after a failure: attempts left, its circuit not open, the failure allowing it. */
const mayTry = (
  chain: ChainRun,
  model: ModelCatalog.ModelInfo,
  error: RetryPolicy.RetryableError
): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const { attempts, refusals, silentRoutes } = yield* Ref.get(chain.state)
    if (attempts >= chain.engine.policy.maxAttempts) return false
    // A refusal hops once, when the policy lets it.
    if (error._tag === "RefusalError" && (chain.engine.policy.onRefusal === "fail" || refusals > 1)) return false
    // A model whose every deployment has its circuit open is skipped.
    let open = 0
    const routes = chain.engine.providers.routes(model)
    for (const route of routes) {
      if ((yield* chain.engine.breaker.state(Engine.routeKey(route))) === "open") open++
    }
    if (routes.length > 0 && open === routes.length) return false
    // A model whose every deployment ran out of one of the engine's own time limits is not called again: a silent
    // or crawling route costs one limit, and the chain moves on.
    if (routes.length > 0 && routes.every((route) => silentRoutes.has(Engine.routeKey(route)))) return false
    return mayRunAfter(chain.engine.catalog, model, error)
  })

/** Tells the caller a failed attempt will be made again on `model`: why, and after how long. */
const announceRetry = (
  chain: ChainRun,
  model: ModelCatalog.ModelInfo,
  retry: RetryPolicy.Retry
): Effect.Effect<void> =>
  Effect.flatMap(Ref.get(chain.state), ({ attempts }) =>
    chain.generation.emit({
      _tag: "Retrying",
      provider: model.provider,
      model: model.id,
      errorType: Errors.errorType(retry.error),
      message: Errors.retryMessage(retry.error),
      attempt: attempts + 1,
      delayMs: Duration.toMillis(retry.delay)
    }))
