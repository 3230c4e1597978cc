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
 * `SpendLedger.storeUnavailable` counts the calls; Redis is then left alone for `retryAfter`, so that the
 * generations of an outage do not each wait out the timeout, and what they cost is recorded once it answers.
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
   * `commandTimeout`, at least 1 second.
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

/** Replaces a hold by what its generation cost. KEYS: the accounts. ARGV: hold id, cost. */
const settleScript = `
for _, key in ipairs(KEYS) do
  redis.call('HDEL', key, 'hold:' .. ARGV[1])
  redis.call('HINCRBYFLOAT', key, 'spent', ARGV[2])
end
return 0
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

/**
 * A ledger over a Redis connection.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (redis: Redis, options: Omit<Options, "redis">): SpendLedger.Service => {
  const prefix = options.prefix ?? "plot-engine:spend:"
  const holdTimeout = Duration.toMillis(options.holdTimeout ?? Duration.hours(1))
  const commandTimeout = options.commandTimeout ?? Duration.seconds(2)
  const retryAfterMillis = options.retryAfter === undefined
    ? Math.max(1_000, 5 * Duration.toMillis(commandTimeout))
    : Duration.toMillis(options.retryAfter)
  const projectsKey = `${prefix}projects`
  const accountKey = (projectId: string, period: "day" | "month", now: number) =>
    `${prefix}${projectId}:${SpendLedger.periodOf(period, now).key}`

  /** Until when Redis is left alone after a command failed (on the `Clock`), and whether an outage is under way. */
  let awayUntil = 0
  let away = false
  const unavailable = Effect.as(Metric.increment(SpendLedger.storeUnavailable), undefined)

  /**
   * A Redis command, bounded in time; `undefined` at once while Redis is left alone after a failure, and when it
   * fails or is too slow (the outage's first failure logged).
   */
  const command = <A>(what: string, run: () => Promise<A>): Effect.Effect<A | undefined> =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (now < awayUntil) return unavailable
      return Effect.tryPromise({
        try: run,
        catch: (error) => error instanceof Error ? error : new Error(String(error))
      }).pipe(
        Effect.timeoutFail({
          duration: commandTimeout,
          onTimeout: () => new Error(`no answer in ${Duration.format(commandTimeout)}`)
        }),
        Effect.tap(() => {
          if (!away) return Effect.void
          away = false
          return Effect.logInfo("Spend ledger answers again; generations are checked against it")
        }),
        Effect.catchAll((error) =>
          Effect.flatMap(Clock.currentTimeMillis, (failedAt) => {
            awayUntil = failedAt + retryAfterMillis
            const outageBegins = !away
            away = true
            return Effect.zipRight(
              outageBegins
                ? Effect.logWarning(
                  `Spend ledger unavailable (${what}); generations go ahead unchecked until it answers, asked again ` +
                    `every ${Duration.format(retryAfterMillis)}`
                ).pipe(Effect.annotateLogs({ error: error.message }))
                : Effect.void,
              unavailable
            )
          })
        )
      )
    })

  /** Settlements Redis did not take: recorded before the next reservation, so no spend is lost to an outage. */
  const unrecorded: Array<{ readonly keys: ReadonlyArray<string>; readonly holdId: string; readonly costUsd: number }> =
    []
  const record = (settlement: (typeof unrecorded)[number]) =>
    command(
      "settle",
      () => redis.eval(settleScript, settlement.keys.length, ...settlement.keys, settlement.holdId, settlement.costUsd)
    )
      .pipe(Effect.map((answer) => answer !== undefined))
  /** Records the settlements Redis did not take, oldest first, unless Redis is being left alone. */
  const recordUnrecorded = Effect.flatMap(Clock.currentTimeMillis, (now) => {
    if (now < awayUntil) return Effect.void
    return Effect.suspend(function loop(): Effect.Effect<void> {
      const next = unrecorded[0]
      if (next === undefined) return Effect.void
      return Effect.flatMap(record(next), (recorded) => {
        if (!recorded) return Effect.void
        unrecorded.shift()
        return loop()
      })
    })
  })

  const settler = (keys: ReadonlyArray<string>, holdId: string): SpendLedger.Reservation => {
    let settled = false
    return {
      settle: (costUsd) =>
        Effect.suspend(() => {
          if (settled) return Effect.void
          settled = true
          return Effect.flatMap(record({ keys, holdId, costUsd }), (recorded) =>
            recorded ? Effect.void : Effect.sync(() => unrecorded.push({ keys, holdId, costUsd })))
        })
    }
  }

  return SpendLedger.SpendLedger.of({
    reserve: (projectId, estimateUsd) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const keys = SpendLedger.periods.map((period) => accountKey(projectId, period, now))
        const holdId = randomUUID()
        const perAccount = SpendLedger.periods.flatMap((period) => [
          String(SpendLedger.limitOf(options.limits, projectId, period) ?? ""),
          String(keptFor(period, now))
        ])
        return Effect.zipRight(
          recordUnrecorded,
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
            const refusedAt = answer?.[0] ?? 0
            // Unchecked when Redis did not answer, but what it costs is still recorded if Redis is back by then.
            if (refusedAt === 0) return Effect.succeed(settler(keys, holdId))
            const period = SpendLedger.periods[refusedAt - 1]!
            return Effect.fail(SpendLedger.exceeded({
              projectId,
              period,
              limitUsd: SpendLedger.limitOf(options.limits, projectId, period)!,
              spentUsd: Number(answer![1]),
              estimateUsd,
              now
            }))
          })
        )
      }),
    snapshot: Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Effect.map(
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
        (snapshot) => snapshot ?? []
      ))
  })
}

/**
 * The ledger over Redis, with its limits; the connection is closed with the layer.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options): Layer.Layer<SpendLedger.SpendLedger> =>
  Layer.scoped(
    SpendLedger.SpendLedger,
    Effect.map(
      Effect.acquireRelease(
        // A command waits for a reconnection at most once before failing, so `commandTimeout` is what bounds it.
        Effect.sync(() => {
          const redis = new Redis({ maxRetriesPerRequest: 1, ...options.redis })
          // Connection errors reach the commands that meet them (and are logged there); unheard, ioredis prints them.
          redis.on("error", () => {})
          return redis
        }),
        (redis) => Effect.sync(() => redis.disconnect())
      ),
      (redis) => make(redis, options)
    )
  )
