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

  /** Every item, in no order, the heap left empty. */
  takeAll(): Array<A> {
    return this.items.splice(0)
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

/**
 * A min-priority queue for items that mostly arrive in order (deadlines a fixed time after arrival): an item not
 * before the last one queued in order joins a FIFO, in O(1); any other goes to a heap. `peek` and `pop` give the
 * least of both, so the order is a heap's; with items in order, a pop is O(1) rather than O(log n).
 *
 * @internal
 */
export class MinQueue<A> {
  private readonly heap: MinHeap<A>
  private inOrder: Array<A> = []
  private head = 0
  constructor(private readonly before: (a: A, b: A) => boolean) {
    this.heap = new MinHeap(before)
  }

  get size(): number {
    return this.heap.size + this.inOrder.length - this.head
  }

  push(item: A): void {
    const last = this.inOrder.length > this.head ? this.inOrder[this.inOrder.length - 1] : undefined
    if (last === undefined || !this.before(item, last)) this.inOrder.push(item)
    else this.heap.push(item)
  }

  peek(): A | undefined {
    const first = this.inOrder[this.head]
    const top = this.heap.peek()
    if (first === undefined) return top
    return top !== undefined && this.before(top, first) ? top : first
  }

  /** Keeps only the items `keep` holds to (stale ones dropped before they surface), in O(n log n). */
  retain(keep: (item: A) => boolean): void {
    const kept = [...this.heap.takeAll(), ...this.inOrder.slice(this.head)].filter(keep)
    this.inOrder = kept.sort((a, b) => (this.before(a, b) ? -1 : this.before(b, a) ? 1 : 0))
    this.head = 0
  }

  pop(): A | undefined {
    const first = this.inOrder[this.head]
    const top = this.heap.peek()
    if (first === undefined || (top !== undefined && this.before(top, first))) return this.heap.pop()
    this.inOrder[this.head++] = undefined as unknown as A
    if (this.head === this.inOrder.length) {
      this.inOrder = []
      this.head = 0
    } else if (this.head > 1_024 && this.head * 2 > this.inOrder.length) {
      // Compacted once the popped part is most of the array: amortized O(1) per item.
      this.inOrder = this.inOrder.slice(this.head)
      this.head = 0
    }
    return first
  }
}
