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

/** A metric's tag sets, as a tree of their names and values in order (no key string built per update). */
interface TagTree {
  readonly children: Map<string, TagTree>
  metric: unknown
}
const taggedCache = new WeakMap<object, { readonly root: TagTree; size: number }>()

const childOf = (node: TagTree, step: string, keep: boolean): TagTree => {
  let child = node.children.get(step)
  if (child === undefined) {
    child = { children: new Map(), metric: undefined }
    if (keep) node.children.set(step, child)
  }
  return child
}

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
  let cache = taggedCache.get(metric)
  if (cache === undefined) {
    cache = { root: { children: new Map(), metric: undefined }, size: 0 }
    taggedCache.set(metric, cache)
  }
  // Past 10,000 tag sets, a new one is made on every update rather than kept.
  const keep = cache.size < 10_000
  let node = cache.root
  for (const name in tags) node = childOf(childOf(node, name, keep), tags[name]!, keep)
  if (node.metric === undefined) {
    const key = keys.get(metric)
    if (key === undefined) throw new Error("Metrics.tagged: the metric was not made by Metrics.fromKey")
    const labels = Object.entries(tags).map(([k, v]) => MetricLabel.make(k, v))
    node.metric = Metric.fromMetricKey(MetricKey.taggedWithLabels(key, labels))
    cache.size++
  }
  return node.metric as M
}

/**
 * A label whose values a request chooses (a model, a limiter key: a request may pin any model): the `known` values
 * and the first others seen, up to `max` in all, are themselves, any other is `other`. Every tag set is a metric the
 * registry keeps for the process's life (and a series for Prometheus), so a client naming a new model per request
 * would grow them without end; the known ones keep their names however early such a client comes.
 */
export const boundedLabel = (max: number, known: Iterable<string> = []): (value: string) => string => {
  const seen = new Set<string>(known)
  return (value) => {
    if (seen.has(value)) return value
    if (seen.size >= max) return otherLabel
    seen.add(value)
    return value
  }
}

/** The value of a bounded label past its first values (see `boundedLabel`). */
export const otherLabel = "other"

/**
 * Several updates as one effect: the ambient tags (`Effect.tagMetrics`) are read once and passed to each
 * update, as `Metric.update` would.
 */
export const record = (updates: (labels: ReadonlyArray<MetricLabel.MetricLabel>) => void): Effect.Effect<void> =>
  FiberRef.getWith(FiberRef.currentMetricLabels, (labels) => Effect.sync(() => updates(labels)))
