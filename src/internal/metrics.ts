/**
 * Metrics that stay cheap per update. `Metric.tagged` makes a new metric key, hashes it and looks it up in the
 * registry on every update; a metric made from an already tagged key finds its state once and keeps it. So each
 * metric is made from its key (remembered here), and each tag set of it once.
 *
 * @internal
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import type * as MetricKeyType from "effect/MetricKeyType"
import * as MetricLabel from "effect/MetricLabel"

const keys = new WeakMap<object, MetricKey.MetricKey<any>>()
const taggedCache = new WeakMap<object, Map<string, unknown>>()

/** A metric made from its key, which is remembered for `tagged`. */
export const fromKey = <Type extends MetricKeyType.MetricKeyType<any, any>>(key: MetricKey.MetricKey<Type>) => {
  const metric = Metric.fromMetricKey(key)
  keys.set(metric, key)
  return metric
}

/**
 * The metric with these tags (in this order, as `Metric.tagged` one after another would give), made once per tag
 * set: tag values come from small sets (providers, models, outcomes, error types, limiter keys). Only for a
 * metric made by `fromKey`.
 */
export const tagged = <M extends Metric.Metric<any, any, any>>(
  metric: M,
  tags: Readonly<Record<string, string>>
): M => {
  let byTags = taggedCache.get(metric)
  if (byTags === undefined) {
    byTags = new Map()
    taggedCache.set(metric, byTags)
  }
  const id = Object.entries(tags).map(([k, v]) => `${k}\u0000${v}`).join("\u0001")
  let cached = byTags.get(id) as M | undefined
  if (cached === undefined) {
    const key = keys.get(metric)
    if (key === undefined) throw new Error("Metrics.tagged: the metric was not made by Metrics.fromKey")
    const labels = Object.entries(tags).map(([k, v]) => MetricLabel.make(k, v))
    cached = Metric.fromMetricKey(MetricKey.taggedWithLabels(key, labels)) as M
    if (byTags.size < 10_000) byTags.set(id, cached)
  }
  return cached
}

/**
 * Several updates as one effect: the ambient tags (`Effect.tagMetrics`) are read once and passed to each
 * update, as `Metric.update` would.
 */
export const record = (updates: (labels: ReadonlyArray<MetricLabel.MetricLabel>) => void): Effect.Effect<void> =>
  FiberRef.getWith(FiberRef.currentMetricLabels, (labels) => Effect.sync(() => updates(labels)))
