/**
 * A map whose keys come and go (a model pinned by one request, a retired deployment) kept bounded without a timer:
 * before a new key is added, once the map holds `threshold` entries, or twice what the last sweep left, the entries
 * that are as good as absent go. Amortized O(1) per key added.
 *
 * @internal
 */

/** Sweeps `map` when it is due, forgetting the entries `forgettable` says lose nothing; call it before adding a key. */
export type Sweep<K, V> = (forgettable: (value: V, key: K) => boolean) => void

export const make = <K, V>(map: Map<K, V>, threshold: number): Sweep<K, V> => {
  let sweepAt = threshold
  return (forgettable) => {
    if (map.size < sweepAt) return
    for (const [key, value] of map) if (forgettable(value, key)) map.delete(key)
    sweepAt = Math.max(threshold, 2 * map.size)
  }
}
