/**
 * Places in a queue whose members may leave from anywhere (interrupted, past their deadline, refused), not only from
 * its front: each member has a slot, in arrival order, and a Fenwick tree counts the slots still taken, so that a
 * member's place (those ahead of it still waiting, plus one) is a sum over the slots before its own, in O(log n)
 * however many left ahead of it or behind. A queue that renumbers its slots (it dropped its front, or put members
 * back at its head) rebuilds the tree, in O(n).
 *
 * @internal
 */
export class QueueOrder {
  /** 1-based Fenwick tree over slots: `tree[i]` counts the taken slots in a range ending at slot `i - 1`. */
  private tree = new Int32Array(64)
  private taken = new Uint8Array(63)
  /** Slots taken. */
  size = 0

  /** A member takes `slot`. */
  take(slot: number): void {
    if (slot >= this.taken.length) this.grow(slot + 1)
    if (this.taken[slot] === 1) return
    this.taken[slot] = 1
    this.size++
    this.add(slot, 1)
  }

  /** A member leaves `slot`. */
  leave(slot: number): void {
    if (slot >= this.taken.length || this.taken[slot] === 0) return
    this.taken[slot] = 0
    this.size--
    this.add(slot, -1)
  }

  /** How many slots before `slot` are taken. */
  before(slot: number): number {
    let sum = 0
    for (let i = Math.min(slot, this.taken.length); i > 0; i -= i & -i) sum += this.tree[i]!
    return sum
  }

  /** After the queue renumbered its slots: slot `i` of `length` is taken when `isTaken(i)`. */
  rebuild(length: number, isTaken: (slot: number) => boolean): void {
    const capacity = Math.max(63, length)
    this.taken = new Uint8Array(capacity)
    this.tree = new Int32Array(capacity + 1)
    this.size = 0
    for (let slot = 0; slot < length; slot++) {
      if (isTaken(slot)) {
        this.taken[slot] = 1
        this.size++
      }
    }
    this.build()
  }

  private add(slot: number, by: number): void {
    const tree = this.tree
    for (let i = slot + 1; i < tree.length; i += i & -i) tree[i] += by
  }

  /** Room for `slots` slots at least, doubling (amortized O(1) a slot). */
  private grow(slots: number): void {
    let capacity = this.taken.length
    while (capacity < slots) capacity = capacity * 2 + 1
    const taken = new Uint8Array(capacity)
    taken.set(this.taken)
    this.taken = taken
    this.tree = new Int32Array(capacity + 1)
    this.build()
  }

  /** The tree from `taken`, in O(n): each node passes its count to its parent. */
  private build(): void {
    const tree = this.tree
    const taken = this.taken
    for (let i = 1; i < tree.length; i++) {
      tree[i] = tree[i]! + taken[i - 1]!
      const parent = i + (i & -i)
      if (parent < tree.length) tree[parent] = tree[parent]! + tree[i]!
    }
  }
}
