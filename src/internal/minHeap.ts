/**
 * A binary min-heap: push and pop in O(log n), the least item on top.
 *
 * @internal
 */
export class MinHeap<A> {
  private readonly items: Array<A> = []
  constructor(private readonly before: (a: A, b: A) => boolean) {}

  get size(): number {
    return this.items.length
  }

  peek(): A | undefined {
    return this.items[0]
  }

  push(item: A): void {
    const items = this.items
    items.push(item)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(items[i]!, items[parent]!)) break
      swap(items, i, parent)
      i = parent
    }
  }

  pop(): A | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length === 0 || last === undefined) return top
    items[0] = last
    let i = 0
    while (true) {
      const left = 2 * i + 1
      const right = left + 1
      let least = i
      if (left < items.length && this.before(items[left]!, items[least]!)) least = left
      if (right < items.length && this.before(items[right]!, items[least]!)) least = right
      if (least === i) return top
      swap(items, i, least)
      i = least
    }
  }
}

/** A swap without a destructuring array (which unoptimized code allocates on every step). */
const swap = <A>(items: Array<A>, i: number, j: number) => {
  const item = items[i]!
  items[i] = items[j]!
  items[j] = item
}
