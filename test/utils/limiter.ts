/**
 * The in-memory rate limiter the limiter tests build: an OpenAI quota roomy in everything but what a test sets.
 */
import * as ProviderRateLimiter from "../../src/ProviderRateLimiter.js"

export const limiter = (
  quota: Partial<ProviderRateLimiter.Quota>,
  options: Partial<ProviderRateLimiter.Options> = {}
) =>
  ProviderRateLimiter.layerMemory({
    quotas: { openai: { requestsPerMinute: 10_000, tokensPerMinute: 10_000_000, maxConcurrent: 100, ...quota } },
    ...options
  })
