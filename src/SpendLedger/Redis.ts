/**
 * The spend ledger over Redis, so that every instance of a backend draws on one budget per project. An entry
 * point of its own: importing `plot-engine` does not load `ioredis`, which a host that uses this layer installs
 * itself (`ioredis` 5).
 *
 * Each project's period is one Redis hash: what was spent, and the holds of generations under way, each with the
 * time it lapses. Checking the limits and holding the estimate is one Lua script, so two instances cannot both
 * take the last dollar. A hold whose process died before settling lapses after `holdTimeout` instead of holding
 * the budget for the rest of the period.
 *
 * When Redis is unreachable or slow (`commandTimeout`), a generation is not stopped for it: it goes ahead
 * unchecked (the ledger fails open, as the rate limiter's store does). A warning says so once per outage, and
 * `SpendLedger.storeUnavailable` counts the calls made without Redis. Redis is then left alone for `retryAfter`, so
 * that the generations of an outage do not each wait out the timeout; after it, one call finds out whether Redis is
 * back while the others go on. What generations cost meanwhile is kept and recorded as soon as Redis may be asked
 * again (by the layer in the background, and once more as it closes), each settlement once: a mark of it, kept for
 * `holdTimeout`, stops one Redis ran after the ledger gave up waiting from counting twice.
 *
 * @example
 * ```ts
 * import * as SpendLedgerRedis from "plot-engine/SpendLedger/Redis"
 *
 * // Provide it where `SpendLedger.layerMemory` would go: every instance with the same prefix shares the budgets.
 * const SharedBudgets = SpendLedgerRedis.layer({
 *   limits: { default: { dailyUsd: 5, monthlyUsd: 50 } },
 *   redis: { host: "127.0.0.1", port: 6379 }
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { Redis, type RedisOptions } from "ioredis"
import { randomUUID } from "node:crypto"
import * as SpendLedger from "../SpendLedger.js"

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options {
  readonly limits: SpendLedger.Limits
  /** How to reach Redis (ioredis options). */
  readonly redis: RedisOptions
  /** Prefixes every key of the ledger (default `plot-engine:spend:`); instances with the same prefix share it. */
  readonly prefix?: string | undefined
  /** How long a hold lasts when its generation never settles it (its process died). Default: 1 hour. */
  readonly holdTimeout?: Duration.DurationInput | undefined
  /** How long one Redis command may take before the ledger goes on without it. Default: 2 seconds. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /**
   * How long the ledger goes on without Redis after a command failed, before asking it again. Default: five times
   * `commandTimeout`, at least 1 second; never less than `commandTimeout`.
   */
  readonly retryAfter?: Duration.DurationInput | undefined
}

/**
 * Drops the lapsed holds of each account, then refuses when the estimate would take one past its limit (the
 * account's index and what it had used), or holds the estimate in every account.
 *
 * KEYS: the accounts (day, month). ARGV: now, estimate, hold id, hold lapses at, then per account its limit
 * ("" for none) and how long the account is kept (ms).
 */
const reserveScript = `
local now = tonumber(ARGV[1])
local estimate = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  local fields = redis.call('HGETALL', key)
  local used = 0
  for j = 1, #fields, 2 do
    local field, value = fields[j], fields[j + 1]
    if field == 'spent' then
      used = used + tonumber(value)
    else
      local amount, lapsesAt = string.match(value, '^([^@]+)@(.+)$')
      if tonumber(lapsesAt) <= now then
        redis.call('HDEL', key, field)
      else
        used = used + tonumber(amount)
      end
    end
  end
  local limit = ARGV[3 + 2 * i]
  if limit ~= '' and used + estimate > tonumber(limit) then
    return {i, tostring(used)}
  end
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'hold:' .. ARGV[3], ARGV[2] .. '@' .. ARGV[4])
  redis.call('PEXPIRE', key, ARGV[4 + 2 * i])
end
return {0, ''}
`

/**
 * Replaces a hold by what its generation cost, once: a settlement Redis ran after the ledger gave up waiting for it is
 * not counted again when the ledger records it again. An account the reservation never reached (Redis was away then)
 * is kept as a reservation keeps it, and its project listed.
 *
 * KEYS: the accounts (day, month), the settlement's mark, the projects set. ARGV: hold id, cost, how long the mark is
 * kept (ms), the project, then per account how long it is kept (ms).
 */
const settleScript = `
local accounts = #KEYS - 2
if not redis.call('SET', KEYS[accounts + 1], '1', 'NX', 'PX', ARGV[3]) then
  return 0
end
for i = 1, accounts do
  local key = KEYS[i]
  redis.call('HDEL', key, 'hold:' .. ARGV[1])
  redis.call('HINCRBYFLOAT', key, 'spent', ARGV[2])
  if redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ARGV[4 + i])
  end
end
redis.call('SADD', KEYS[accounts + 2], ARGV[4])
return 1
`

/** What an account holds at `now`: settled spend, and the holds that have not lapsed. */
const readAccount = (fields: Record<string, string>, now: number) => {
  let spentUsd = 0
  let reservedUsd = 0
  for (const [field, value] of Object.entries(fields)) {
    if (field === "spent") {
      spentUsd = Number(value)
      continue
    }
    const [amount, lapsesAt] = value.split("@")
    if (Number(lapsesAt) > now) reservedUsd += Number(amount)
  }
  return { spentUsd, reservedUsd }
}

/** An account is kept a day past its period, so a generation that ends after midnight still settles into it. */
const keptFor = (period: "day" | "month", now: number) =>
  SpendLedger.periodOf(period, now).endsAt - now + Duration.toMillis(Duration.days(1))

/** A generation's cost, to be recorded: what it reserved, and when. */
interface Settlement {
  readonly projectId: string
  readonly reservedAt: number
  readonly holdId: string
  readonly costUsd: number
}

/** What a Redis command came to: its answer; Redis away (failed, too slow, or left alone); or an error reply. */
type Answer<A> =
  | { readonly _tag: "Answered"; readonly value: A }
  | { readonly _tag: "Away" }
  | { readonly _tag: "Refused"; readonly error: Error }

const away: Answer<never> = { _tag: "Away" }

/** How many costs Redis did not take a reservation records before its own command, at most (see `flushSome`). */
const flushedBeforeACall = 8

/**
 * Redis' own refusal of a command (an error reply): Redis is there, the command is wrong. Not the replies that mean
 * "not now" (a replica during a failover, a restart loading its data, a busy script, memory full): those are an
 * outage, and what was refused is kept to record later.
 */
const isErrorReply = (error: Error) =>
  error.name === "ReplyError" && !/^(LOADING|READONLY|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|OOM)\b/.test(error.message)

/**
 * A ledger over a Redis connection (with `fork`, recording in the background what Redis did not take), and its last
 * try at recording that as it closes.
 */
const makeLedger = (
  redis: Redis,
  options: Omit<Options, "redis">,
  fork?: (effect: Effect.Effect<void>) => Effect.Effect<void>
) => {
  const prefix = options.prefix ?? "plot-engine:spend:"
  const holdTimeout = Duration.toMillis(options.holdTimeout ?? Duration.hours(1))
  const commandTimeout = options.commandTimeout ?? Duration.seconds(2)
  // Never shorter than a command may take: one call finds out whether Redis is back at a time.
  const retryAfterMillis = options.retryAfter === undefined
    ? Math.max(1_000, 5 * Duration.toMillis(commandTimeout))
    : Math.max(Duration.toMillis(options.retryAfter), Duration.toMillis(commandTimeout))
  const projectsKey = `${prefix}projects`
  const accountKey = (projectId: string, period: "day" | "month", now: number) =>
    `${prefix}${projectId}:${SpendLedger.periodOf(period, now).key}`

  // An outage: whether one is under way, until when Redis is left alone (on the `Clock`), and how many commands have
  // failed so far (a command that started before the last failure says nothing of whether Redis is back).
  let isAway = false
  let awayUntil = 0
  let failures = 0

  /**
   * A Redis command, bounded in time. While Redis is left alone after a failure it is not sent; once that time is
   * over, the first command sent is the one that finds out (the others go on without Redis meanwhile). The outage's
   * first failure is logged, and its end.
   */
  const command = <A>(what: string, run: () => Promise<A>): Effect.Effect<Answer<A>> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (isAway) {
        if (now < awayUntil) return Effect.succeed(away)
        awayUntil = now + retryAfterMillis
      }
      const failuresBefore = failures
      const answered = Effect.suspend(() => {
        if (!isAway || failures !== failuresBefore) return Effect.void
        isAway = false
        awayUntil = 0
        return Effect.logInfo("Spend ledger answers again; generations are checked against it")
      })
      // Interruptible even where its caller is not (a settlement runs as a generation's finalizer): the timeout must be
      // able to give up on it. Given up, the command may still run; a settlement's mark keeps it from counting twice.
      return Effect.interruptible(Effect.tryPromise({
        try: run,
        catch: (error) => error instanceof Error ? error : new Error(String(error))
      })).pipe(
        Effect.timeoutFail({
          duration: commandTimeout,
          onTimeout: () => new Error(`no answer in ${Duration.format(commandTimeout)}`)
        }),
        Effect.matchEffect({
          onSuccess: (value): Effect.Effect<Answer<A>> => Effect.as(answered, { _tag: "Answered", value } as const),
          onFailure: (error): Effect.Effect<Answer<A>> => {
            if (isErrorReply(error)) {
              return Effect.as(
                Effect.zipRight(
                  answered,
                  Effect.logError(`Spend ledger refused a command (${what})`).pipe(
                    Effect.annotateLogs({ error: error.message })
                  )
                ),
                { _tag: "Refused", error } as const
              )
            }
            return Effect.flatMap(Clock.currentTimeMillis, (failedAt) => {
              failures++
              awayUntil = failedAt + retryAfterMillis
              const outageBegins = !isAway
              isAway = true
              return Effect.as(
                outageBegins
                  ? Effect.logWarning(
                    `Spend ledger unavailable (${what}); generations go ahead unchecked until it answers, asked ` +
                      `again every ${Duration.format(retryAfterMillis)}`
                  ).pipe(Effect.annotateLogs({ error: error.message }))
                  : Effect.void,
                away
              )
            })
          }
        })
      )
    })

  /** A ledger call made without Redis: counted. */
  const unavailable = Metric.increment(SpendLedger.storeUnavailable)

  /** Settlements Redis did not take, oldest first: recorded when it answers again, so no spend is lost to an outage. */
  const unrecorded: Array<Settlement> = []

  const record = (settlement: Settlement) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const keys = SpendLedger.periods.map((period) => accountKey(settlement.projectId, period, settlement.reservedAt))
      // Kept as long as a reservation made when this one was would have kept it.
      const keptUntil = SpendLedger.periods.map((period) =>
        String(Math.max(1, keptFor(period, settlement.reservedAt) - (now - settlement.reservedAt)))
      )
      return command("settle", () =>
        redis.eval(
          settleScript,
          keys.length + 2,
          ...keys,
          `${prefix}settled:${settlement.holdId}`,
          projectsKey,
          settlement.holdId,
          settlement.costUsd,
          holdTimeout,
          settlement.projectId,
          ...keptUntil
        ))
    })

  /**
   * Records up to `most` of what Redis did not take, oldest first, until Redis is away; one it refuses is dropped
   * (logged), not tried forever. One flush at a time (`flushing`).
   */
  const recordUpTo = (most: number) =>
    Effect.suspend(function next(): Effect.Effect<void> {
      const settlement = unrecorded[0]
      if (settlement === undefined || most-- <= 0) return Effect.void
      return Effect.flatMap(record(settlement), (answer) => {
        if (answer._tag === "Away") return Effect.void
        unrecorded.shift()
        return next()
      })
    })
  const flushing = Effect.unsafeMakeSemaphore(1)
  const flush = flushing.withPermits(1)(recordUpTo(Infinity))
  const dueNow = (now: number) => unrecorded.length > 0 && !(isAway && now < awayUntil)
  /** A flush, unless Redis is being left alone (nothing to wait for then). */
  const flushUnlessAway = Effect.flatMap(Clock.currentTimeMillis, (now) => dueNow(now) ? flush : Effect.void)
  /**
   * Before a reservation or a snapshot: a few of what Redis did not take, when no flush is under way; the rest is
   * left to the background (or to the next calls), so that a backlog never holds a generation up.
   */
  const flushSome = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    dueNow(now)
      ? Effect.zipRight(flushing.withPermitsIfAvailable(1)(recordUpTo(flushedBeforeACall)), flushRestLater)
      : Effect.void)

  /**
   * With `fork`, what Redis did not take is recorded as soon as it may be asked again, whether or not a generation
   * comes to ask it: one fiber while there is something to record.
   */
  let flushingLater = false
  const flushLater = Effect.suspend(function later(): Effect.Effect<void> {
    if (unrecorded.length === 0) {
      flushingLater = false
      return Effect.void
    }
    return Effect.flatMap(
      Clock.currentTimeMillis,
      (now) => Effect.zipRight(Effect.sleep(Math.max(0, awayUntil - now)), Effect.zipRight(flushUnlessAway, later()))
    )
  })
  const flushRestLater = Effect.suspend(() => {
    if (fork === undefined || flushingLater || unrecorded.length === 0) return Effect.void
    flushingLater = true
    return fork(flushLater)
  })
  const keep = (settlement: Settlement) =>
    Effect.zipRight(Effect.sync(() => unrecorded.push(settlement)), flushRestLater)

  const settler = (projectId: string, reservedAt: number, holdId: string): SpendLedger.Reservation => {
    let settled = false
    return {
      settle: (costUsd) =>
        Effect.suspend(() => {
          if (settled) return Effect.void
          settled = true
          const cost = Number.isFinite(costUsd) && costUsd >= 0 ? costUsd : 0
          const settlement: Settlement = { projectId, reservedAt, holdId, costUsd: cost }
          const recorded = Effect.flatMap(record(settlement), (answer) =>
            answer._tag === "Away"
              ? Effect.zipRight(unavailable, keep(settlement))
              : Effect.void)
          return cost === costUsd ? recorded : Effect.zipRight(
            Effect.logWarning(`Spend ledger: a generation's cost was ${costUsd}; recorded as 0`).pipe(
              Effect.annotateLogs({ projectId })
            ),
            recorded
          )
        })
    }
  }

  const service = SpendLedger.SpendLedger.of({
    reserve: (projectId, estimateUsd) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const keys = SpendLedger.periods.map((period) => accountKey(projectId, period, now))
        const holdId = randomUUID()
        const perAccount = SpendLedger.periods.flatMap((period) => [
          String(SpendLedger.limitOf(options.limits, projectId, period) ?? ""),
          String(keptFor(period, now))
        ])
        return Effect.zipRight(
          flushSome,
          command("reserve", async () => {
            const [answer] = await redis.multi()
              .eval(reserveScript, keys.length, ...keys, now, estimateUsd, holdId, now + holdTimeout, ...perAccount)
              .sadd(projectsKey, projectId)
              .exec() ?? []
            if (answer?.[0]) throw answer[0]
            return answer?.[1] as [number, string]
          })
        ).pipe(
          Effect.flatMap((answer) => {
            // Unchecked when Redis did not answer, but what it costs is still recorded once it does.
            if (answer._tag !== "Answered") {
              return Effect.as(unavailable, settler(projectId, now, holdId))
            }
            const [refusedAt, spent] = answer.value
            if (refusedAt === 0) return Effect.succeed(settler(projectId, now, holdId))
            const period = SpendLedger.periods[refusedAt - 1]!
            return Effect.fail(SpendLedger.exceeded({
              projectId,
              period,
              limitUsd: SpendLedger.limitOf(options.limits, projectId, period)!,
              spentUsd: Number(spent),
              estimateUsd,
              now
            }))
          })
        )
      }),
    snapshot: Effect.zipRight(
      flushSome,
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(
          command("snapshot", async () => {
            const known = await redis.smembers(projectsKey)
            const projects = [...new Set([...Object.keys(options.limits.projects ?? {}), ...known])].sort()
            const pipeline = redis.pipeline()
            for (const projectId of projects) {
              for (const period of SpendLedger.periods) pipeline.hgetall(accountKey(projectId, period, now))
            }
            const replies = (await pipeline.exec()) ?? []
            return projects.flatMap((projectId, p) =>
              SpendLedger.periods.map((period, i): SpendLedger.PeriodSnapshot => {
                const [error, fields] = replies[p * SpendLedger.periods.length + i] ?? []
                if (error) throw error
                return {
                  projectId,
                  period,
                  limitUsd: SpendLedger.limitOf(options.limits, projectId, period),
                  ...readAccount(fields as Record<string, string>, now),
                  resetsAt: SpendLedger.periodOf(period, now).endsAt
                }
              })
            )
          }),
          (answer) => answer._tag === "Answered" ? Effect.succeed(answer.value) : Effect.as(unavailable, [])
        ))
    )
  })

  /** One more try, Redis left alone or not, and what is still not recorded then logged: it is lost. */
  const lastFlush = Effect.zipRight(
    Effect.suspend(() => {
      awayUntil = 0
      return flush
    }),
    Effect.suspend(() =>
      unrecorded.length === 0 ? Effect.void : Effect.logWarning(
        `Spend ledger closed with ${unrecorded.length} generations' costs Redis did not take; they are not counted`
      ).pipe(Effect.annotateLogs({ costUsd: unrecorded.reduce((sum, settlement) => sum + settlement.costUsd, 0) }))
    )
  )

  return { service, lastFlush }
}

/**
 * A ledger over a Redis connection. What generations cost while Redis was away is recorded by this ledger's next
 * reservations and snapshots, a few before each; `layer` also records it in the background, and when it closes.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (redis: Redis, options: Omit<Options, "redis">): SpendLedger.Service =>
  makeLedger(redis, options).service

/**
 * The ledger over Redis, with its limits; the connection is closed with the layer.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options): Layer.Layer<SpendLedger.SpendLedger> =>
  Layer.scoped(
    SpendLedger.SpendLedger,
    Effect.gen(function*() {
      const redis = yield* Effect.acquireRelease(
        // A command waits for a reconnection at most once before failing, so `commandTimeout` is what bounds it.
        Effect.sync(() => {
          const redis = new Redis({ maxRetriesPerRequest: 1, ...options.redis })
          // Connection errors reach the commands that meet them (and are logged there); unheard, ioredis prints them.
          redis.on("error", () => {})
          return redis
        }),
        (redis) => Effect.sync(() => redis.disconnect())
      )
      const scope = yield* Effect.scope
      // What Redis did not take is recorded once it answers, even with no generation to ask it, and tried once more
      // as the layer closes (an instance that stops must not take its fleet's spend with it).
      const ledger = makeLedger(redis, options, (effect) => Effect.asVoid(Effect.forkIn(effect, scope)))
      yield* Effect.addFinalizer(() => ledger.lastFlush)
      return ledger.service
    })
  )
