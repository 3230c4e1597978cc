/**
 * A circuit breaker per key (the engine keys it per deployment of a model, `Engine.routeKey`): after `threshold`
 * consecutive failures the key is skipped for a cool-down, then one probe is let through (half-open); a success closes the circuit, a failure opens it
 * again. Time is Effect's `Clock`, so `TestClock` drives it.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"

/**
 * @since 0.1.0
 * @category Models
 */
export type State = "closed" | "open" | "half_open"

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options {
  /**
   * Consecutive failures that open the circuit (default 10). Not 5: with one call in five failing at random (a
   * bad hour, not an outage), five in a row come every few thousand calls and would stop a working model.
   */
  readonly threshold?: number | undefined
  /** How long an open circuit skips the model before a probe (default 30 seconds). */
  readonly cooldown?: Duration.DurationInput | undefined
}

interface Entry {
  readonly state: State
  readonly failures: number
  readonly openedAt: number
  /** How long an open circuit stays open: the breaker's cool-down, or a trip's own. */
  readonly cooldownMillis: number
  /** In half-open, whether the one probe is out. */
  readonly probing: boolean
}

/**
 * @since 0.1.0
 * @category Models
 */
export interface Service {
  /** Whether a call may go to the model now; in half-open this takes the one probe. */
  readonly tryAcquire: (key: string) => Effect.Effect<boolean>
  /** Records a success; returns the new state when it changed. */
  readonly onSuccess: (key: string) => Effect.Effect<State | undefined>
  /** Records a failure; returns the new state when it changed. */
  readonly onFailure: (key: string) => Effect.Effect<State | undefined>
  /**
   * Ends a call that says nothing about the model's health (interrupted, or refused before it reached the
   * provider): a half-open circuit lets another probe through.
   */
  readonly release: (key: string) => Effect.Effect<void>
  /** The state now (an open circuit past its cool-down reads as half-open). */
  readonly state: (key: string) => Effect.Effect<State>
  /**
   * Opens the circuit at once for `cooldown` (a failure that says the model will not answer for a while, such as a
   * model its provider no longer serves); returns the new state when it changed.
   */
  readonly trip: (key: string, cooldown: Duration.DurationInput) => Effect.Effect<State | undefined>
}

/** The most keys a breaker keeps (see `forgetOldest`). */
const maxEntries = 1_024

/**
 * Makes a breaker holding the state of every key.
 *
 * @since 0.1.0
 * @category Constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service> =>
  Effect.gen(function*() {
    const threshold = options.threshold ?? 10
    const cooldownMillis = Duration.toMillis(options.cooldown ?? "30 seconds")
    const entries = yield* Ref.make<ReadonlyMap<string, Entry>>(new Map())
    const closed: Entry = { state: "closed", failures: 0, openedAt: 0, cooldownMillis, probing: false }
    const opened = (failures: number, now: number, cooldown = cooldownMillis): Entry => ({
      state: "open",
      failures,
      openedAt: now,
      cooldownMillis: cooldown,
      probing: false
    })

    const current = (map: ReadonlyMap<string, Entry>, key: string, now: number): Entry => {
      const entry = map.get(key) ?? closed
      return entry.state === "open" && now - entry.openedAt >= entry.cooldownMillis
        ? { ...entry, state: "half_open", probing: false }
        : entry
    }

    // The map is replaced, never changed in place, and only when an entry changes (most calls find a closed
    // circuit and leave it closed). A circuit closed again is no entry.
    const update = <A>(key: string, f: (entry: Entry, now: number) => readonly [A, Entry]) =>
      Effect.clockWith((clock) =>
        Ref.modify(entries, (map) => {
          const now = clock.unsafeCurrentTimeMillis()
          const entry = current(map, key, now)
          const [result, next] = f(entry, now)
          // Unchanged, or a closed circuit left closed (no entry): the same map.
          if (next === entry && (map.get(key) === entry || (next === closed && !map.has(key)))) {
            return [result, map] as const
          }
          const changed = new Map(map)
          if (next === closed) changed.delete(key)
          else {
            if (!map.has(key) && map.size >= maxEntries) forgetOldest(changed, now)
            changed.set(key, next)
          }
          return [result, changed] as const
        })
      )

    /**
     * Room for a new key once there are `maxEntries` (keys come and go: a request may pin any model, and each model
     * its provider does not serve is tripped): the circuits past their cool-down go first, then the oldest, up to
     * half of them; a circuit whose probe is out stays, to hear how it ended. A forgotten circuit is closed, as a new
     * key's: its calls go through, and a model still failing opens it again after `threshold` failures.
     */
    const forgetOldest = (map: Map<string, Entry>, now: number) => {
      for (const [key, entry] of map) {
        if (current(map, key, now).state === "half_open" && !entry.probing) map.delete(key)
      }
      for (const [key, entry] of map) {
        if (map.size < maxEntries / 2) break
        if (!entry.probing) map.delete(key)
      }
    }

    return {
      tryAcquire: (key) =>
        update(key, (entry) => {
          switch (entry.state) {
            case "closed":
              return [true, entry]
            case "open":
              return [false, entry]
            case "half_open":
              return entry.probing ? [false, entry] : [true, { ...entry, probing: true }]
          }
        }),
      onSuccess: (key) =>
        update(
          key,
          (
            entry
          ) => [
            entry.state === "closed" ? undefined : "closed",
            entry.state === "closed" && entry.failures === 0 ? entry : closed
          ]
        ),
      release: (key) =>
        update(key, (entry) => [undefined, entry.state === "half_open" ? { ...entry, probing: false } : entry]),
      onFailure: (key) =>
        update(key, (entry, now) => {
          if (entry.state === "half_open") return ["open", opened(entry.failures + 1, now)]
          const failures = entry.failures + 1
          return failures >= threshold && entry.state === "closed"
            ? ["open", opened(failures, now)]
            : [undefined, { ...entry, failures }]
        }),
      trip: (key, cooldown) =>
        update(key, (entry, now) => [
          entry.state === "open" ? undefined : "open",
          opened(entry.failures + 1, now, Duration.toMillis(cooldown))
        ]),
      state: (key) =>
        Effect.clockWith((clock) =>
          Effect.map(Ref.get(entries), (map) => current(map, key, clock.unsafeCurrentTimeMillis()).state)
        )
    }
  })
