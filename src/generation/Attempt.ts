/**
 * One attempt of a generation on one model: its circuit breaker asked, its prompt prepared, admitted through the
 * rate limiter, the call made under one timer, and what came of it booked (the breaker, the chain's state, the
 * metrics). Each attempt is a span with the GenAI attributes, and its logs say which model.
 *
 * @internal
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as HashMap from "effect/HashMap"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Ref from "effect/Ref"
import type * as CircuitBreaker from "../CircuitBreaker.js"
import * as ContextBudget from "../ContextBudget.js"
import * as Domain from "../Domain.js"
import * as Errors from "../Errors.js"
import * as Timeout from "../internal/timeout.js"
import * as Tracing from "../internal/tracing.js"
import * as ModelCatalog from "../ModelCatalog.js"
import * as PromptBuilder from "../PromptBuilder.js"
import type * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import * as Providers from "../Providers.js"
import type * as RetryPolicy from "../RetryPolicy.js"
import * as Telemetry from "../Telemetry.js"
import * as TokenCount from "../TokenCount.js"
import * as Call from "./Call.js"
import type * as Chain from "./Chain.js"
import * as Engine from "./Engine.js"
import type * as Prepare from "./Prepare.js"

/** A step of the fallback chain: which model, at which place. */
export interface Step {
  readonly index: number
  readonly model: ModelCatalog.ModelInfo
}

/** An attempt that produced a plot. */
export interface Success {
  readonly outcome: Call.Outcome
  readonly model: ModelCatalog.ModelInfo
  /** The deployment that answered. */
  readonly deployment: string
  readonly prepared: Prepare.Prepared
}

/** The failure of a generation that ran out of time, named after the model it was on. */
export const pastDeadline = (policy: RetryPolicy.Policy, target: ModelCatalog.ModelInfo): Errors.TimeoutError =>
  new Errors.TimeoutError({
    provider: target.provider,
    model: target.id,
    kind: "deadline",
    detail: `the generation did not finish within its deadline of ${Duration.format(policy.deadline)}`
  })

/**
 * Runs a step's model on the deployments that serve it: on one of them first (see `chooseRoute`), and when that
 * deployment fails in a way another may not (its quota, its health, its key), on the next one at once, each call an
 * attempt of the chain's budget within its deadline. A failure that any deployment would meet (the request itself,
 * the answer) ends the step.
 */
export const run = (
  engine: Engine.Engine,
  generation: Engine.Generation,
  state: Ref.Ref<Chain.State>,
  step: Step,
  deadlineAt: number
): Effect.Effect<Success, RetryPolicy.RetryableError> => {
  const routes = engine.providers.routes(step.model)
  if (routes.length === 0) {
    return Effect.fail(
      new Errors.ModelNotFoundError({
        provider: step.model.provider,
        model: step.model.id,
        detail: "no configured deployment serves this model"
      })
    )
  }
  const homeKey = `${Engine.modelKey(step.model)}\u0000${generation.request.projectId}`
  // What the limiter will be asked to reserve: the prompt (made once per generation) and the output limit.
  const estimate = Effect.flatMap(Ref.get(state), (chain) => {
    const key = Engine.modelKey(step.model)
    return Effect.map(
      generation.prompts.forModel(step.model, chain.reducedBudgets.get(key), chain.outputBudgets.get(key)),
      (prepared) => ({ inputTokens: prepared.inputTokens, outputTokens: prepared.prompt.maxOutputTokens })
    )
  })
  const onRoute = (route: Providers.Route, left: ReadonlyArray<Providers.Route>) => {
    const called = callOn(engine, generation, state, step.model, route, deadlineAt)
    // With one deployment, there is no home to remember.
    if (routes.length === 1) return called
    const answered = Effect.tap(called, () => rememberHome(engine, homeKey, route))
    const others = left.filter((other) => other !== route)
    // The last deployment left: its failure is the step's.
    if (others.length === 0) return answered
    return Effect.catchAll(answered, (error) => {
      if (!anotherDeploymentMayDo(error)) return Effect.fail(error)
      return Engine.withNow((now) =>
        Effect.flatMap(
          Ref.get(state),
          (chain) =>
            chain.attempts < engine.policy.maxAttempts && now < deadlineAt ? onRoutes(others) : Effect.fail(error)
        )
      )
    })
  }
  const onRoutes = (left: ReadonlyArray<Providers.Route>): Effect.Effect<Success, RetryPolicy.RetryableError> =>
    left.length === 1
      ? onRoute(left[0]!, left)
      : Effect.flatMap(
        chooseRoute(engine, state, left, homeKey, estimate, generation.lane),
        (route) => onRoute(route, left)
      )
  if (routes.length === 1) return onRoutes(routes)
  // A deployment that went silent in this generation is not called again (the chain skips a model with no other).
  return Effect.flatMap(Ref.get(state), ({ silentRoutes }) => {
    const live = routes.filter((route) => !silentRoutes.has(Engine.routeKey(route)))
    return onRoutes(live.length > 0 ? live : routes)
  })
}

/**
 * Failures of a deployment rather than of the request: another deployment of the same model has its own quota,
 * health and key. A request it cannot serve (a bad request, a prompt too long, an answer that could not be read)
 * would fail the same way anywhere.
 */
export const anotherDeploymentMayDo = (error: RetryPolicy.RetryableError): boolean => {
  switch (error._tag) {
    case "RateLimitError":
    case "QuotaExhaustedError":
    case "ServerError":
    case "TimeoutError":
    case "NetworkError":
    case "AuthError":
    case "ModelNotFoundError":
      return true
    default:
      return false
  }
}

/**
 * The engine's own time limits on a call (the attempt timeout, and a stream's first-token, idle and throughput
 * limits): the route was silent or crawling, and is not called again in this generation; the next deployment or
 * model goes at once. A provider's or gateway's timeout (408, 504) is retried like a server error.
 */
const failsOverAtOnce = (error: RetryPolicy.RetryableError): boolean =>
  error._tag === "TimeoutError" && error.kind !== "provider" && error.kind !== "deadline"

/**
 * The deployment a call goes to, among those whose circuit is not open and that have not failed in this
 * generation: the one that holds the project's prompt cache for the model (its home, see `Engine`) unless its
 * queue would keep the call `homeSlackMillis` longer than another's; else one drawn by weight (Effect's `Random`:
 * pinned in tests) among those that would admit it soonest (the limiter's `expectedWait`, within
 * `waitSlackMillis`), a standby (weight 0) only when no other is among them. When none is left, the first.
 */
const chooseRoute = (
  engine: Engine.Engine,
  state: Ref.Ref<Chain.State>,
  routes: ReadonlyArray<Providers.Route>,
  homeKey: string,
  estimate: Effect.Effect<ProviderRateLimiter.Estimate>,
  lane: ProviderRateLimiter.Lane
): Effect.Effect<Providers.Route> => {
  if (routes.length === 1) return Effect.succeed(routes[0]!)
  return Effect.gen(function*() {
    const { failedRoutes } = yield* Ref.get(state)
    const healthy: Array<Providers.Route> = []
    for (const route of routes) {
      if (failedRoutes.has(Engine.routeKey(route))) continue
      if ((yield* engine.breaker.state(Engine.routeKey(route))) === "open") continue
      healthy.push(route)
    }
    if (healthy.length === 0) return routes[0]!
    if (healthy.length === 1) return healthy[0]!
    const needs = yield* estimate
    const waits = yield* Effect.forEach(
      healthy,
      (route) =>
        engine.limiter.expectedWait(
          { provider: route.provider, model: route.model, deployment: route.deployment },
          needs,
          lane
        )
    )
    const soonest = Math.min(...waits)
    const home = engine.promptCache.homes.get(homeKey)
    if (home !== undefined && home.expiresAt > (yield* Clock.currentTimeMillis)) {
      const at = healthy.findIndex((route) => route.deployment === home.deployment)
      if (at !== -1 && waits[at]! <= soonest + homeSlackMillis) return healthy[at]!
    }
    return pickByWeight(healthy.filter((_, i) => waits[i]! <= soonest + waitSlackMillis), yield* Random.next)
  })
}

/** How much longer a call may queue to reach the deployment that holds its prompt cache. */
const homeSlackMillis = 2_000

/** Deployments whose expected waits are this close are alike: the weights choose among them. */
const waitSlackMillis = 250

/** Remembers the deployment that answered a project's call of a model, while its prompt cache lives. */
const rememberHome = (engine: Engine.Engine, homeKey: string, route: Providers.Route): Effect.Effect<void> =>
  Effect.map(Clock.currentTimeMillis, (now) => {
    const homes = engine.promptCache.homes
    if (homes.size >= 10_000) homes.clear()
    homes.set(homeKey, {
      deployment: route.deployment,
      expiresAt: now + PromptBuilder.cacheTtlMillis[engine.promptCache.ttl]
    })
  })

/** The route a draw in [0, 1) falls on, each route's share its weight; standbys (weight 0) only when all are. */
export const pickByWeight = <R extends { readonly weight: number }>(routes: ReadonlyArray<R>, draw: number): R => {
  const total = routes.reduce((sum, route) => sum + route.weight, 0)
  if (total === 0) return routes[0]!
  let at = draw * total
  for (const route of routes) {
    if (at < route.weight) return route
    at -= route.weight
  }
  return routes[routes.length - 1]!
}

/**
 * One attempt on one deployment of a model, in a span of its own. A deployment whose circuit is open is skipped
 * without spending an attempt (a `ServerError` that asks for no retry), so that the chain moves on at once.
 */
const callOn = (
  engine: Engine.Engine,
  generation: Engine.Generation,
  state: Ref.Ref<Chain.State>,
  target: ModelCatalog.ModelInfo,
  route: Providers.Route,
  deadlineAt: number
): Effect.Effect<Success, RetryPolicy.RetryableError> =>
  generation.traced
    ? Effect.withSpan(attempt(engine, generation, state, target, route, deadlineAt), "PlotGeneration.attempt", {
      captureStackTrace: false
    })
    : attempt(engine, generation, state, target, route, deadlineAt)

/** The log annotations of a call: which generation, project, model and deployment. */
const callAnnotations = (
  generation: Engine.Generation,
  target: ModelCatalog.ModelInfo,
  route: Providers.Route
) =>
(annotations: HashMap.HashMap<string, unknown>): HashMap.HashMap<string, unknown> =>
  annotations.pipe(
    HashMap.set<string, unknown>("requestId", generation.requestId),
    HashMap.set<string, unknown>("projectId", generation.request.projectId),
    HashMap.set<string, unknown>("provider", target.provider),
    HashMap.set<string, unknown>("model", target.id),
    HashMap.set<string, unknown>("deployment", route.deployment)
  )

const attempt = (
  engine: Engine.Engine,
  generation: Engine.Generation,
  state: Ref.Ref<Chain.State>,
  target: ModelCatalog.ModelInfo,
  route: Providers.Route,
  deadlineAt: number
) => {
  const breakerKey = Engine.routeKey(route)
  return Effect.flatMap(engine.breaker.tryAcquire(breakerKey), (acquired) => {
    if (!acquired) {
      // Tripped because the provider does not serve the model: the same answer, without asking again.
      const notServed = engine.notServed.get(breakerKey)
      const skipped: Errors.ServerError | Errors.ModelNotFoundError = notServed ?? new Errors.ServerError({
        provider: target.provider,
        model: target.id,
        shouldRetry: false,
        detail: "skipped: its circuit breaker is open"
      })
      const lastFailure = notServed === undefined ? "circuit_open" : "model_not_found"
      return Effect.zipRight(Ref.update(state, (chain) => ({ ...chain, lastFailure })), Effect.fail(skipped))
    }
    // A half-open circuit's probe that ends without a verdict on the model (refused before it reached the provider,
    // interrupted, or a defect) lets another through; a failure the call booked has reopened the circuit already.
    return Effect.onError(
      attemptAcquired(engine, generation, state, target, route, deadlineAt, breakerKey),
      () => engine.breaker.release(breakerKey)
    )
  })
}

const attemptAcquired = Effect.fnUntraced(function*(
  engine: Engine.Engine,
  generation: Engine.Generation,
  state: Ref.Ref<Chain.State>,
  target: ModelCatalog.ModelInfo,
  route: Providers.Route,
  deadlineAt: number,
  breakerKey: string
) {
  const key = Engine.modelKey(target)
  const { attempts, outputBudgets, reducedBudgets } = yield* Ref.updateAndGet(state, (chain) => ({
    ...chain,
    attempts: chain.attempts + 1
  }))
  const prepared = yield* generation.prompts.forModel(target, reducedBudgets.get(key), outputBudgets.get(key))
  const { prompt } = prepared
  if (generation.traced) {
    yield* Effect.annotateCurrentSpan({
      "gen_ai.system": target.provider,
      "plot_engine.deployment": route.deployment,
      "gen_ai.request.model": target.id,
      "gen_ai.request.max_tokens": prompt.maxOutputTokens,
      ...(prompt.temperature === undefined ? {} : { "gen_ai.request.temperature": prompt.temperature }),
      ...(prompt.reasoningEffort === undefined ? {} : { "plot_engine.reasoning_effort": prompt.reasoningEffort }),
      "plot_engine.attempt": attempts
    })
  }
  // The prompt goes in the message, not in the log annotations: annotations are compared (hashed) on every
  // update, and hashing a 100 KB prompt cost a millisecond per attempt. Only built at debug level.
  const annotate = callAnnotations(generation, target, route)
  yield* Effect.whenLogLevel(
    Effect.logDebug("Prompt", { system: prompt.system, user: prompt.user }).pipe(
      Effect.locallyWith(FiberRef.currentLogAnnotations, annotate)
    ),
    LogLevel.Debug
  )
  if (attempts === 1) {
    for (const message of prepared.fitted.warnings) yield* generation.emit({ _tag: "Warning", message })
  }
  // The chain holds configured providers only (the selection checked them), so this cannot fail.
  const languageModel = yield* engine.providers.languageModel(target.provider, target.id, {
    maxOutputTokens: prompt.maxOutputTokens,
    temperature: prompt.temperature,
    reasoningEffort: prompt.reasoningEffort,
    promptCacheKey: PromptBuilder.promptCacheKey(generation.request.projectId)
  }, route.deployment).pipe(Effect.orDie)
  const input: Call.Input = { target, prompt, request: generation.request, context: prepared.fitted.context }
  const limiterTarget = { provider: target.provider, model: target.id, deployment: route.deployment }
  const observer: Providers.HeadersObserver = (headers) => engine.limiter.observe(limiterTarget, headers)
  const attemptTimeoutMillis = Duration.toMillis(engine.policy.attemptTimeout)
  // The call's timer starts once admitted (a wait for quota is not the provider's slowness), and is cut to the
  // deadline when that comes first (`remaining`, the time left then).
  const tally = Call.newTally()
  const timedCall = (remaining: number) => {
    // The call's limit: the attempt timeout, or the deadline when that comes first.
    const total = Math.min(attemptTimeoutMillis, remaining)
    const onTotal = () =>
      remaining < attemptTimeoutMillis ? pastDeadline(engine.policy, target) : new Errors.TimeoutError({
        provider: target.provider,
        model: target.id,
        kind: "attempt",
        detail: `no answer within the attempt timeout of ${Duration.format(engine.policy.attemptTimeout)}`
      })
    // The call's logs, the model's own too, say which generation and model it is, and its response headers go to
    // the limiter: set in the fiber the call runs in (nothing to restore); without a tracer, the clients' spans are
    // not made. A stream's watchdog keeps the limit with its silence limits (one timer at a time per stream).
    const locals: Array<Timeout.Local> = [
      [FiberRef.currentLogAnnotations, annotate],
      [Providers.currentHeadersObserver, () => observer]
    ]
    if (!generation.traced) locals.push(Tracing.tracerDisabled)
    if (generation.mode === "object") {
      return Timeout.timeoutFail(Call.structured(languageModel, input, tally), total, onTotal, locals)
    }
    return Call.streamed(languageModel, input, generation.emit, tally, {
      ...streamTimeouts(engine.policy, target),
      total,
      onTotal
    }, locals)
  }
  // A prompt cache lives on one deployment.
  const cacheKey = `${breakerKey}\u0000${generation.request.projectId}`
  // What came of the call is booked however it ended: a success's cost and health, a failure, or (cut by the
  // generation's deadline, or the caller) a part already shown made void.
  const outcome = yield* Effect.onExit(
    callAdmitted(
      { engine, emit: generation.emit, lane: generation.lane, target, limiterTarget, prepared, cacheKey },
      deadlineAt,
      tally,
      timedCall
    ),
    (exit) => {
      if (Exit.isSuccess(exit)) {
        const { usage } = exit.value
        return Engine.sequence(
          bookCost(state, target, route, "success", { usage, estimated: false }),
          Effect.flatMap(
            engine.breaker.onSuccess(breakerKey),
            (changed) => {
              // A probe that succeeds closes the circuit, whatever opened it.
              if (changed !== undefined) engine.notServed.delete(breakerKey)
              return announceCircuit(generation.emit, target, changed)
            }
          ),
          engine.tokens.calibrate(target, prepared.inputTokens, usage.inputTokens)
        )
      }
      if (Cause.isInterruptedOnly(exit.cause)) return restartedIfShown(generation, target, tally, "timeout")
      const failure = Cause.failureOption(exit.cause)
      return Option.isSome(failure)
        ? bookFailure({ engine, generation, state, target, route, prepared, tally }, failure.value)
        : Effect.void
    }
  )
  if (generation.traced) {
    yield* Effect.annotateCurrentSpan({
      "gen_ai.usage.input_tokens": outcome.usage.inputTokens,
      "gen_ai.usage.output_tokens": outcome.usage.outputTokens,
      "gen_ai.usage.cache_read.input_tokens": outcome.usage.cachedInputTokens ?? 0,
      "gen_ai.usage.cache_creation.input_tokens": outcome.usage.cacheWriteTokens ?? 0
    })
  }
  return { outcome, model: target, deployment: route.deployment, prepared } satisfies Success
})

/** A stream's silence limits: the policy's, without the first-token limit for a model that reasons first. */
const streamTimeouts = (
  policy: RetryPolicy.Policy,
  target: ModelCatalog.ModelInfo
): Pick<Call.StreamLimits, "firstToken" | "idle" | "throughput"> => ({
  firstToken: target.reasoningEfforts.length > 0 ? undefined : positiveMillis(policy.firstTokenTimeout),
  idle: positiveMillis(policy.idleTimeout),
  // A window of no length, or no least rate, is no limit (a watchdog would look again without sleeping).
  throughput: policy.minThroughput === undefined || policy.minThroughput.tokensPerSecond <= 0 ||
      !(Duration.toMillis(policy.minThroughput.window) > 0)
    ? undefined
    : {
      tokensPerSecond: policy.minThroughput.tokensPerSecond,
      windowMillis: Duration.toMillis(policy.minThroughput.window)
    }
})

/** A silence limit in milliseconds: none when unset or of no length (a watchdog would look again without sleeping). */
const positiveMillis = (limit: Duration.DurationInput | undefined): number | undefined => {
  if (limit === undefined) return undefined
  const millis = Duration.toMillis(limit)
  return millis > 0 ? millis : undefined
}

/**
 * The time a wait for the quota leaves for the call itself: the attempt timeout, at most a quarter of the
 * deadline. A generation admitted later would be cut by its deadline and end in a template after its time was
 * spent queueing; it is refused instead, as soon as the wait is foreseen.
 */
const callReserve = (policy: RetryPolicy.Policy): number =>
  Math.min(Duration.toMillis(policy.attemptTimeout), Duration.toMillis(policy.deadline) / 4)

/**
 * A call through the rate limiter: admitted with the estimate (the prompt's tokens and the output limit) while
 * time for the call is left (`callReserve`), told to the caller while it queues (`Queued`), the limiter hearing its response headers, and reconciled however it ends (with the
 * reported usage; when it failed or was cut off, with the prompt and what a stream had written, about four
 * characters a token). A provider 429 pauses every caller of the key. A call that would start at the deadline
 * is not sent, and gives its whole reservation back.
 */
const callAdmitted = (
  { cacheKey, emit, engine, lane, limiterTarget, prepared, target }: {
    readonly engine: Engine.Engine
    readonly emit: Engine.Emit
    readonly lane: ProviderRateLimiter.Lane
    readonly target: ModelCatalog.ModelInfo
    readonly limiterTarget: ProviderRateLimiter.Target
    readonly prepared: Prepare.Prepared
    /** The model and project, whose prefix the provider may have cached. */
    readonly cacheKey: string
  },
  deadlineAt: number,
  tally: Call.Tally,
  call: (remaining: number) => Effect.Effect<Call.Outcome, RetryPolicy.RetryableError>
): Effect.Effect<Call.Outcome, RetryPolicy.RetryableError> => {
  return Effect.flatMap(expectedCacheRead(engine, target, cacheKey), (cacheRead) => {
    // What the quota counts of the prompt: all of it, less (on Anthropic) the prefix expected from the cache.
    const countedInput = prepared.inputTokens - cacheRead
    return engine.limiter.withAdmission(limiterTarget, {
      inputTokens: countedInput,
      outputTokens: prepared.prompt.maxOutputTokens
    }, (admission) =>
      Engine.withNow((now) => {
        if (now >= deadlineAt) {
          return Effect.zipRight(admission.cancel, Effect.fail(pastDeadline(engine.policy, target)))
        }
        return Effect.onExit(call(deadlineAt - now), (exit) =>
          Exit.isSuccess(exit)
            ? Engine.sequence(
              Telemetry.recordProviderCall(limiterTarget, exit),
              rememberCache(engine, target, cacheKey, exit.value.usage),
              admission.reconcile(countedByQuota(target, exit.value.usage))
            )
            : Engine.sequence(
              Telemetry.recordProviderCall(limiterTarget, exit),
              Effect.flatMap(
                spent(tally, prepared),
                (spending) =>
                  spending === undefined
                    ? admission.reconcile({ inputTokens: countedInput, outputTokens: 0 })
                    : Engine.sequence(
                      rememberCache(engine, target, cacheKey, spending.usage),
                      admission.reconcile(countedByQuota(target, spending.usage))
                    )
              ),
              // The key is paused before this call's permit goes back: nobody is admitted into the 429.
              pauseAfterRateLimit(engine, limiterTarget, exit)
            ))
      }), {
      lane,
      until: deadlineAt - callReserve(engine.policy),
      maxPause: Duration.toMillis(engine.policy.maxDelay),
      onQueued: (queued) => emit({ _tag: "Queued", provider: target.provider, model: target.id, ...queued })
    })
  })
}

/** Pauses the key after the provider's own 429 (a local refusal is not the provider's). */
const pauseAfterRateLimit = (
  engine: Engine.Engine,
  limiterTarget: ProviderRateLimiter.Target,
  exit: Exit.Exit<unknown, RetryPolicy.RetryableError>
): Effect.Effect<void> => {
  const error = Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()
  return Option.isSome(error) && error.value._tag === "RateLimitError" && !error.value.local
    ? engine.limiter.pause(limiterTarget, error.value.retryAfterMs ?? 1_000, error.value.limit)
    : Effect.void
}

/**
 * What an Anthropic call is expected to read from the prompt cache: the prefix a call of the same model and project
 * read or wrote within the cache's time to live. Anthropic does not count cache reads against its input tokens per
 * minute, so the limiter reserves the input less that (and reconciles with what was read); OpenAI counts them.
 */
const expectedCacheRead = (
  engine: Engine.Engine,
  target: ModelCatalog.ModelInfo,
  cacheKey: string
): Effect.Effect<number> => {
  const known = target.provider === "anthropic" ? engine.promptCache.cached.get(cacheKey) : undefined
  // The clock is read only when there is a prefix whose time to live it decides.
  return known === undefined
    ? Effect.succeed(0)
    : Effect.map(Clock.currentTimeMillis, (now) => (known.expiresAt > now ? known.tokens : 0))
}

/** Remembers the prefix a call read from or wrote to Anthropic's prompt cache, for the next call's reservation. */
const rememberCache = (
  engine: Engine.Engine,
  target: ModelCatalog.ModelInfo,
  cacheKey: string,
  usage: Domain.Usage
): Effect.Effect<void> => {
  const tokens = usage.cachedInputTokens ?? usage.cacheWriteTokens ?? 0
  if (target.provider !== "anthropic" || tokens === 0) return Effect.void
  return Effect.map(Clock.currentTimeMillis, (now) => {
    const cached = engine.promptCache.cached
    if (cached.size >= 10_000) cached.clear()
    cached.set(cacheKey, { tokens, expiresAt: now + PromptBuilder.cacheTtlMillis[engine.promptCache.ttl] })
  })
}

/**
 * What the provider's quota counts of a call's usage: Anthropic does not count input read from its prompt cache
 * against the input tokens per minute (its current models); OpenAI counts every input token.
 */
const countedByQuota = (target: ModelCatalog.ModelInfo, usage: Domain.Usage): ProviderRateLimiter.Estimate => ({
  inputTokens: target.provider === "anthropic" ? usage.inputTokens - (usage.cachedInputTokens ?? 0) : usage.inputTokens,
  outputTokens: usage.outputTokens
})

/**
 * What a failed call was billed: the usage the provider reported (an answer that could not be used), else, for a
 * stream cut off before its usage, the prompt and what it had written (about four characters a token); nothing
 * when it wrote nothing (a refusal before any output is not billed).
 */
const spent = (
  tally: Call.Tally,
  prepared: Prepare.Prepared
): Effect.Effect<{ readonly usage: Domain.Usage; readonly estimated: boolean } | undefined> =>
  Effect.sync(() => {
    const { billed, written } = tally
    if (billed !== undefined) return { usage: billed, estimated: false }
    if (written === 0) return undefined
    const outputTokens = TokenCount.tokensOfLength(written)
    return {
      usage: new Domain.Usage({
        inputTokens: prepared.inputTokens,
        outputTokens,
        totalTokens: prepared.inputTokens + outputTokens
      }),
      estimated: true
    }
  })

/**
 * Books what an attempt the provider billed cost, in the chain's state and the cost metrics (a failed one in the
 * wasted cost too).
 */
const bookCost = (
  state: Ref.Ref<Chain.State>,
  target: ModelCatalog.ModelInfo,
  route: Providers.Route,
  outcome: string,
  { estimated, usage }: { readonly usage: Domain.Usage; readonly estimated: boolean }
): Effect.Effect<void> => {
  const attempt = new Domain.AttemptCost({
    provider: target.provider,
    model: target.id,
    deployment: route.deployment,
    outcome,
    usage,
    estimated,
    costUsd: ModelCatalog.cost(target, usage)
  }, true)
  return Effect.zipRight(
    Ref.update(state, (chain) => ({ ...chain, billing: [...chain.billing, attempt] })),
    Telemetry.recordAttemptCost(attempt)
  )
}

/**
 * Books a failed attempt: what it was billed, the error and the count of rate limits in the chain's state, the reduced context
 * budget after a context-length rejection, the metrics, and the model's health. Transient failures of the
 * provider count against its circuit; the rest (rate limits, refusals before the call, bad requests) only hand
 * a half-open circuit's probe back.
 */
const bookFailure = (
  { engine, generation, prepared, route, state, tally, target }: {
    readonly engine: Engine.Engine
    readonly generation: Engine.Generation
    readonly state: Ref.Ref<Chain.State>
    readonly target: ModelCatalog.ModelInfo
    readonly route: Providers.Route
    readonly prepared: Prepare.Prepared
    readonly tally: Call.Tally
  },
  error: RetryPolicy.RetryableError
): Effect.Effect<void> => {
  const key = Engine.modelKey(target)
  const breakerKey = Engine.routeKey(route)
  const book = (spending: { readonly usage: Domain.Usage; readonly estimated: boolean } | undefined) =>
    spending === undefined ? Effect.void : bookCost(state, target, route, Errors.errorType(error), spending)
  const billed = Effect.flatMap(spent(tally, prepared), book)
  // A stream that had shown part of its outline: the caller is told that part is void before whatever comes next.
  return Effect.zipRight(
    Effect.zipRight(restartedIfShown(generation, target, tally, Errors.errorType(error)), billed),
    Effect.zipRight(
      Ref.update(state, (chain) => ({
        ...chain,
        lastFailure: Errors.errorType(error),
        failedRoutes: anotherDeploymentMayDo(error) ? new Set(chain.failedRoutes).add(breakerKey) : chain.failedRoutes,
        silentRoutes: failsOverAtOnce(error) ? new Set(chain.silentRoutes).add(breakerKey) : chain.silentRoutes,
        rateLimitErrors: chain.rateLimitErrors + (error._tag === "RateLimitError" ? 1 : 0),
        refusals: chain.refusals + (error._tag === "RefusalError" ? 1 : 0),
        reducedBudgets: error._tag === "ContextTooLongError"
          ? new Map(chain.reducedBudgets).set(
            key,
            ContextBudget.reducedBudget({
              sentContextTokens: prepared.fitted.tokens,
              promptTokens: prepared.promptTokens,
              maxOutputTokens: prepared.prompt.maxOutputTokens,
              maxContextTokens: error.maxContextTokens
            })
          )
          : chain.reducedBudgets,
        outputBudgets: error._tag === "IncompleteResponseError"
          ? withBudget(chain.outputBudgets, key, PromptBuilder.afterIncomplete(target, prepared.prompt))
          : chain.outputBudgets
      })),
      Effect.zipRight(
        Telemetry.recordError(error),
        Errors.isTransient(error) && error._tag !== "RateLimitError"
          ? Effect.flatMap(
            engine.breaker.onFailure(breakerKey),
            (changed) => {
              // Opened (again) by failures: a skipped call says so, not that the model is not served.
              engine.notServed.delete(breakerKey)
              return announceCircuit(generation.emit, target, changed)
            }
          )
          : error._tag === "ModelNotFoundError"
          ? Effect.flatMap(
            Effect.zipRight(
              Effect.sync(() => {
                // Bounded: past 1,000 the oldest goes (its 10 minutes most likely over), not every one (a model still
                // skipped would then be told as a server error, not as the provider's 404).
                engine.notServed.delete(breakerKey)
                if (engine.notServed.size >= 1_000) engine.notServed.delete(engine.notServed.keys().next().value!)
                engine.notServed.set(breakerKey, error)
              }),
              engine.breaker.trip(breakerKey, modelNotServedCooldown)
            ),
            (changed) => announceCircuit(generation.emit, target, changed)
          )
          : engine.breaker.release(breakerKey)
      )
    )
  )
}

/**
 * Tells the caller the part of an outline it was shown is void, when the stream that failed had shown one (it was
 * committed). Whether another attempt follows, a `Retrying`, a `Fallback` or the end says.
 */
const restartedIfShown = (
  generation: Engine.Generation,
  target: ModelCatalog.ModelInfo,
  tally: Call.Tally,
  errorType: Errors.ErrorType
): Effect.Effect<void> =>
  Effect.suspend(() =>
    tally.shown
      ? generation.emit({
        _tag: "Restarted",
        provider: target.provider,
        model: target.id,
        errorType,
        message: "The answer was interrupted partway. What was shown so far is discarded."
      })
      : Effect.void
  )

const withBudget = (
  budgets: ReadonlyMap<string, PromptBuilder.OutputBudget>,
  key: string,
  budget: PromptBuilder.OutputBudget | undefined
) => (budget === undefined ? budgets : new Map(budgets).set(key, budget))

/**
 * How long a deployment's model is skipped after its provider said it does not serve it (a model retired, or not open
 * to the project): it will not be back within minutes, and every generation that chose it would spend a call
 * learning so. Probed again after.
 */
const modelNotServedCooldown = Duration.minutes(10)

/** Tells the caller a model's circuit changed state, when it did. */
const announceCircuit = (
  emit: Engine.Emit,
  target: ModelCatalog.ModelInfo,
  state: CircuitBreaker.State | undefined
): Effect.Effect<void> =>
  state === undefined
    ? Effect.void
    : emit({ _tag: "CircuitChanged", provider: target.provider, model: target.id, state })
