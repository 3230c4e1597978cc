/**
 * Key prefixes of a Redis test file's own, and the removal of their keys when the file's tests are done, so that a
 * run of the Redis suites leaves nothing in Redis (the rate limiter's buckets and a ledger's project set have no
 * expiry). Each file that imports this module gets its own (vitest isolates files), and removes only its own keys:
 * the other files' may still be in use.
 */
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { afterAll } from "vitest"

const fileKey = `plot-engine-test-${randomUUID().slice(0, 8)}`

/** A new prefix for the keys of one test of the calling file. */
export const testPrefix = (): string => `${fileKey}-${randomUUID()}:`

afterAll(async () => {
  const url = process.env.REDIS_URL
  if (url === undefined) return
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = "0"
    do {
      // Anywhere in the key: the rate limiter's store puts its own prefix first (`ratelimiter:`).
      const [next, keys] = await redis.scan(cursor, "MATCH", `*${fileKey}-*`, "COUNT", 500)
      if (keys.length > 0) await redis.unlink(...keys)
      cursor = next
    } while (cursor !== "0")
  } finally {
    redis.disconnect()
  }
})
