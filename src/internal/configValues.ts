/**
 * Values read from the environment that a plain `Config.integer` or `Config.duration` would take whatever their
 * sign: a negative duration read as zero (every attempt timed out at once), a concurrency of 0 (every generation
 * queued until its deadline). Each is refused with the variable's name instead, as a configuration error.
 *
 * @internal
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"

/** An integer of at least `least` (1 unless told). */
export const integerAtLeast = (name: string, least = 1): Config.Config<number> =>
  Config.integer(name).pipe(
    Config.validate({ message: `Expected an integer of at least ${least}`, validation: (n) => n >= least })
  )

/**
 * A duration such as "60 seconds"; with `zero: "allowed"` (where zero means no limit), "0" or any zero duration too,
 * else it must be longer than zero. Never negative.
 */
export const duration = (name: string, zero: "allowed" | "refused"): Config.Config<Duration.Duration> =>
  Config.string(name).pipe(
    Config.mapOrFail((text) => {
      const trimmed = text.trim()
      const decoded = trimmed === "0" ? Duration.zero : trimmed.startsWith("-") ? undefined : decode(trimmed)
      if (decoded === undefined) {
        return Either.left(ConfigError.InvalidData([], `Expected a duration such as "60 seconds", not ${text}`))
      }
      if (zero === "refused" && Duration.toMillis(decoded) <= 0) {
        return Either.left(ConfigError.InvalidData([], `Expected a duration longer than 0, not ${text}`))
      }
      return Either.right(decoded)
    })
  )

/** Whether a text is an absolute http(s) URL (a base URL, an endpoint). */
export const isHttpUrl = (text: string): boolean => URL.canParse(text) && /^https?:\/\//i.test(text)

/**
 * An absolute http(s) URL, such as `example`. Set but empty (`OTEL_EXPORTER_OTLP_ENDPOINT=`, as `.env` files and
 * compose files write an unset value) it is missing, so that `Config.option` reads it as not set.
 */
export const httpUrl = (name: string, example: string): Config.Config<string> =>
  Config.string(name).pipe(
    Config.mapOrFail((text) => {
      const trimmed = text.trim()
      return trimmed === ""
        ? Either.left(ConfigError.MissingData([], `Expected ${name} to be set`))
        : isHttpUrl(trimmed)
        ? Either.right(trimmed)
        : Either.left(ConfigError.InvalidData([], `Expected an http(s) URL, such as ${example}`))
    })
  )

/** A share of a whole, above 0 and at most 1: a decimal ("0.25") or a fraction ("1/4", as for one of 4 instances). */
export const share = (name: string): Config.Config<number> =>
  Config.string(name).pipe(
    Config.mapOrFail((text) => {
      const fraction = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)\s*$/.exec(text)
      const value = fraction ? Number(fraction[1]) / Number(fraction[2]) : text.trim() === "" ? NaN : Number(text)
      return Number.isFinite(value) && value > 0 && value <= 1
        ? Either.right(value)
        : Either.left(
          ConfigError.InvalidData([], `Expected a share above 0 and at most 1, such as 0.25 or 1/4, not ${text}`)
        )
    })
  )

const decode = (text: string): Duration.Duration | undefined => {
  const decoded = Duration.decodeUnknown(text)
  return decoded._tag === "Some" ? decoded.value : undefined
}
