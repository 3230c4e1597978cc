/**
 * Spend budgets: what each project may spend per day and per month (UTC periods, on the `Clock`), and what it has
 * spent. A generation reserves its pre-call estimate before any call and is refused with a typed
 * `BudgetExceededError` when that would pass what is left; once it ends, the reservation is settled with what every
 * billed attempt really cost. Optional: the engine consults the `SpendLedger` in context when there is one.
 *
 * @example
 * ```ts
 * import { SpendLedger } from "plot-engine"
 *
 * // $5 a day and $50 a month for every project, $200 a month for one of them.
 * const LedgerLive = SpendLedger.layerMemory({
 *   default: { dailyUsd: 5, monthlyUsd: 50 },
 *   projects: { "big-novel": { monthlyUsd: 200 } }
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Errors from "./Errors.js"

/**
 * Ledger calls that went ahead without the shared store (Redis) because it failed, did not answer in time, or was
 * still being left alone after failing: each is a reservation unchecked, a settlement kept to record later, or an
 * empty snapshot.
 *
 * @since 0.1.0
 * @category Metrics
 */
export const storeUnavailable = Metric.counter("plot_engine_spend_ledger_unavailable_total", {
  description: "Spend ledger calls that went ahead without its store because it failed or did not answer in time",
  incremental: true
})

/**
 * A project's limits, in USD; a period without one is unlimited.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Budget {
  readonly dailyUsd?: number | undefined
  readonly monthlyUsd?: number | undefined
}

/**
 * The limits: those of every project, and those of particular projects (which replace the default's, period by
 * period).
 *
 * @since 0.1.0
 * @category Models
 */
export interface Limits {
  readonly default?: Budget | undefined
  readonly projects?: Readonly<Record<string, Budget>> | undefined
}

/**
 * A generation's hold on its project's budgets: `settle` replaces the estimate with what it cost.
 *
 * @since 0.1.0
 * @category Models
 */
export interface Reservation {
  readonly settle: (costUsd: number) => Effect.Effect<void>
}

/**
 * One project's period, for dashboards.
 *
 * @since 0.1.0
 * @category Models
 */
export interface PeriodSnapshot {
  readonly projectId: string
  readonly period: "day" | "month"
  readonly limitUsd: number | undefined
  /** Settled spend, and the estimates of generations under way. */
  readonly spentUsd: number
  readonly reservedUsd: number
  readonly resetsAt: number
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Holds `estimateUsd` against the project's budgets, or fails when a period would be passed. */
  readonly reserve: (projectId: string, estimateUsd: number) => Effect.Effect<Reservation, Errors.BudgetExceededError>
  /** The current periods of every project that has spent or has a limit of its own. */
  readonly snapshot: Effect.Effect<ReadonlyArray<PeriodSnapshot>>
}

/**
 * @since 0.1.0
 * @category Models
 */
export class SpendLedger extends Context.Tag("plot-engine/SpendLedger")<SpendLedger, Service>() {}

/**
 * The UTC period a time falls in: its key and when it ends.
 *
 * @since 0.1.0
 * @category Combinators
 */
export const periodOf = (period: "day" | "month", now: number): { readonly key: string; readonly endsAt: number } => {
  const date = new Date(now)
  const year = date.getUTCFullYear()
  const month = date.getUTCMonth()
  if (period === "month") return { key: `${year}-${month + 1}`, endsAt: Date.UTC(year, month + 1, 1) }
  const day = date.getUTCDate()
  return { key: `${year}-${month + 1}-${day}`, endsAt: Date.UTC(year, month, day + 1) }
}

interface Account {
  spentUsd: number
  reservedUsd: number
}

/**
 * The periods a budget is kept for, shortest first.
 *
 * @since 0.1.0
 * @category Models
 */
export const periods = ["day", "month"] as const

/**
 * The refusal of a generation whose estimate would take a period past its limit.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const exceeded = (options: {
  readonly projectId: string
  readonly period: "day" | "month"
  readonly limitUsd: number
  readonly spentUsd: number
  readonly estimateUsd: number
  readonly now: number
}): Errors.BudgetExceededError =>
  new Errors.BudgetExceededError({
    projectId: options.projectId,
    period: options.period,
    limitUsd: options.limitUsd,
    spentUsd: options.spentUsd,
    estimateUsd: options.estimateUsd,
    resetsAt: periodOf(options.period, options.now).endsAt
  })

/**
 * The limit of a project for a period.
 *
 * @since 0.1.0
 * @category Combinators
 */
export const limitOf = (limits: Limits, projectId: string, period: "day" | "month"): number | undefined => {
  const own = limits.projects?.[projectId]
  const field = period === "day" ? "dailyUsd" : "monthlyUsd"
  return own?.[field] ?? limits.default?.[field]
}

/**
 * A ledger in memory (one process).
 *
 * @since 0.1.0
 * @category Constructors
 */
export const makeMemory = (limits: Limits): Service => {
  const accounts = new Map<string, Account>()
  // The periods the accounts are of; once a period ends, its accounts go (a reservation held across the end keeps
  // its own): a long-running process kept every project's every day.
  let current = { day: "", month: "" }
  const forgetEnded = (now: number) => {
    const day = periodOf("day", now).key
    const month = periodOf("month", now).key
    if (day === current.day && month === current.month) return
    current = { day, month }
    for (const key of accounts.keys()) {
      const period = key.slice(key.indexOf("\u0000") + 1)
      if (period !== day && period !== month) accounts.delete(key)
    }
  }
  const accountOf = (projectId: string, period: "day" | "month", now: number) => {
    forgetEnded(now)
    const key = `${projectId}\u0000${periodOf(period, now).key}`
    let account = accounts.get(key)
    if (account === undefined) {
      account = { spentUsd: 0, reservedUsd: 0 }
      accounts.set(key, account)
    }
    return account
  }
  return SpendLedger.of({
    reserve: (projectId, estimateUsd) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        for (const period of periods) {
          const limit = limitOf(limits, projectId, period)
          if (limit === undefined) continue
          const account = accountOf(projectId, period, now)
          const spent = account.spentUsd + account.reservedUsd
          if (spent + estimateUsd > limit) {
            return Effect.fail(exceeded({ projectId, period, limitUsd: limit, spentUsd: spent, estimateUsd, now }))
          }
        }
        // Held in the periods of the moment it starts; settled there too, even when it ends in the next.
        const held = periods.map((period) => accountOf(projectId, period, now))
        for (const account of held) account.reservedUsd += estimateUsd
        let settled = false
        return Effect.succeed<Reservation>({
          settle: (costUsd) =>
            Effect.sync(() => {
              if (settled) return
              settled = true
              for (const account of held) {
                account.reservedUsd -= estimateUsd
                account.spentUsd += costUsd
              }
            })
        })
      }),
    snapshot: Effect.map(Clock.currentTimeMillis, (now) => {
      const projects = new Set([
        ...Object.keys(limits.projects ?? {}),
        ...[...accounts.keys()].map((key) => key.split("\u0000")[0]!)
      ])
      return [...projects].flatMap((projectId) =>
        periods.map((period) => {
          const account = accounts.get(`${projectId}\u0000${periodOf(period, now).key}`)
          return {
            projectId,
            period,
            limitUsd: limitOf(limits, projectId, period),
            spentUsd: account?.spentUsd ?? 0,
            reservedUsd: account?.reservedUsd ?? 0,
            resetsAt: periodOf(period, now).endsAt
          }
        })
      )
    })
  })
}

/**
 * The ledger in memory, with its limits.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layerMemory = (limits: Limits): Layer.Layer<SpendLedger> =>
  Layer.sync(SpendLedger, () => makeMemory(limits))
