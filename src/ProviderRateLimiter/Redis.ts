/**
 * The rate limiter over Redis, so that the instances of a backend share one provider quota (concurrency stays
 * per instance). An entry point of its own: importing `plot-engine` does not load `ioredis`, which a host that
 * uses this layer installs itself (`ioredis` 5).
 *
 * @example
 * ```ts
 * import * as ProviderRateLimiterRedis from "plot-engine/ProviderRateLimiter/Redis"
 *
 * // Provide it where `ProviderRateLimiter.layerMemory` would go: every instance with the same prefix shares it.
 * const SharedQuota = ProviderRateLimiterRedis.layer({
 *   quotas: { openai: { requestsPerMinute: 500, tokensPerMinute: 200_000, maxConcurrent: 10 } },
 *   redis: { host: "127.0.0.1", port: 6379 }
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as RateLimiterRedis from "@effect/experimental/RateLimiter/Redis"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { RedisOptions } from "ioredis"
import * as ProviderRateLimiter from "../ProviderRateLimiter.js"

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options extends ProviderRateLimiter.Options {
  /** How to reach Redis (ioredis options). */
  readonly redis: RedisOptions
}

/**
 * The limiter with its buckets in Redis.
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options): Layer.Layer<ProviderRateLimiter.ProviderRateLimiter> =>
  ProviderRateLimiter.layerStore(options).pipe(Layer.provide(RateLimiterRedis.layerStore(options.redis)))

/**
 * ioredis options from a Redis URL: `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
 *
 * @since 0.1.0
 * @category Options
 */
export const redisOptionsOf = (url: Redacted.Redacted<string> | string): RedisOptions => {
  const parsed = new URL(typeof url === "string" ? url : Redacted.value(url))
  const db = Number(parsed.pathname.slice(1))
  return {
    host: parsed.hostname,
    port: Number(parsed.port || 6379),
    ...(parsed.username === "" ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password === "" ? {} : { password: decodeURIComponent(parsed.password) }),
    ...(parsed.pathname.length > 1 && Number.isInteger(db) ? { db } : {}),
    ...(parsed.protocol === "rediss:" ? { tls: {} } : {})
  }
}
