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
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type { RedisOptions } from "ioredis"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import * as ProviderRateLimiter from "../ProviderRateLimiter.js"
import * as QuotaSignals from "../QuotaSignals.js"

/**
 * @since 0.1.0
 * @category Options
 */
export interface Options extends ProviderRateLimiter.Options {
  /** How to reach Redis (ioredis options). */
  readonly redis: RedisOptions
}

/**
 * The limiter with its buckets in Redis, and a provider 429's pause and the limits it cut told to every instance
 * with the same prefix (`layerQuotaSignals`).
 *
 * @since 0.1.0
 * @category Layers
 */
export const layer = (options: Options): Layer.Layer<ProviderRateLimiter.ProviderRateLimiter> =>
  ProviderRateLimiter.layerStore(options).pipe(
    Layer.provide(Layer.merge(
      RateLimiterRedis.layerStore(options.redis),
      // Pub/sub ignores the database: fleets on different databases of one server keep their signals apart.
      layerQuotaSignals({
        redis: options.redis,
        channel: `${options.prefix ?? "plot-engine:"}quota-signals:${options.redis.db ?? 0}`
      })
    ))
  )

const disconnectOnRelease = (redis: Redis) => Effect.sync(() => redis.disconnect())

/**
 * `QuotaSignals` over Redis pub/sub on `channel`: one connection publishes, one listens. Publishing never waits: a
 * signal sent while Redis is away is dropped (the connection queues nothing offline), and the listener subscribes
 * again when Redis is back.
 *
 * @since 0.2.0
 * @category Layers
 */
export const layerQuotaSignals = (options: {
  readonly redis: RedisOptions
  readonly channel: string
}): Layer.Layer<QuotaSignals.QuotaSignals> =>
  Layer.scoped(
    QuotaSignals.QuotaSignals,
    Effect.gen(function*() {
      const publisher = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis({ ...options.redis, enableOfflineQueue: false, maxRetriesPerRequest: 0 })),
        disconnectOnRelease
      )
      const listener = yield* Effect.acquireRelease(Effect.sync(() => new Redis(options.redis)), disconnectOnRelease)
      // Connection errors are what the limiter's store already reports (see its metric); without a listener,
      // ioredis prints every reconnection attempt's error.
      publisher.on("error", () => {})
      listener.on("error", () => {})
      const members = new Map<string, (signal: QuotaSignals.Signal) => void>()
      listener.on("message", (channel: string, text: string) => {
        if (channel !== options.channel) return
        const message = QuotaSignals.decodeMessage(text)
        if (message === undefined) return
        for (const [id, hear] of members) if (id !== message.from) hear(message.signal)
      })
      // Not awaited: a Redis away or silent at start delays the subscription until it answers, not the limiter.
      listener.subscribe(options.channel).catch(() => {})
      return QuotaSignals.QuotaSignals.of({
        join: (hear) =>
          Effect.acquireRelease(
            Effect.sync(() => {
              const id = randomUUID()
              members.set(id, hear)
              return {
                id,
                tell: (signal: QuotaSignals.Signal) => {
                  publisher.publish(options.channel, QuotaSignals.encodeMessage(id, signal)).catch(() => {})
                }
              }
            }),
            ({ id }) => Effect.sync(() => members.delete(id))
          )
      })
    })
  )

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
