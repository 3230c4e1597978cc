import { describe, expect, it } from "@effect/vitest"
import * as MinHeap from "../../src/internal/minHeap.js"

interface Item {
  readonly at: number
  readonly seq: number
}

const before = (a: Item, b: Item) => a.at < b.at || (a.at === b.at && a.seq < b.seq)

/** A fixed sequence of pseudo-random numbers (a linear congruential generator), the same on every run. */
const numbers = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
  return seed / 2 ** 31
}

describe("MinHeap.MinQueue", () => {
  it("pops in the heap's order whether items come in order or not, pushes and pops interleaved", () => {
    const next = numbers(7)
    const queue = new MinHeap.MinQueue(before)
    const reference: Array<Item> = []
    const popped: Array<Item> = []
    const expected: Array<Item> = []
    let seq = 0
    let now = 0
    for (let round = 0; round < 5_000; round++) {
      now += Math.floor(next() * 3)
      // Mostly in order (a deadline a fixed time after now), sometimes earlier or at the same time.
      const r = next()
      const at = r < 0.7 ? now + 100 : r < 0.85 ? now + Math.floor(next() * 100) : now + 100 - Math.floor(next() * 5)
      const item = { at, seq: seq++ }
      queue.push(item)
      reference.push(item)
      if (next() < 0.45) {
        reference.sort((a, b) => (before(a, b) ? -1 : 1))
        expected.push(reference.shift()!)
        expect(queue.peek()).toBe(expected[expected.length - 1])
        popped.push(queue.pop()!)
      }
      expect(queue.size).toBe(reference.length)
    }
    reference.sort((a, b) => (before(a, b) ? -1 : 1))
    while (queue.size > 0) popped.push(queue.pop()!)
    expect(popped).toEqual([...expected, ...reference])
    expect(queue.pop()).toBeUndefined()
  })

  it("retains only the items asked for, and pops them in order", () => {
    const queue = new MinHeap.MinQueue(before)
    const items = [5, 1, 9, 3, 7, 2, 8].map((at, seq) => ({ at, seq }))
    for (const item of items) queue.push(item)
    queue.retain((item) => item.at % 2 === 1)
    expect(queue.size).toBe(5)
    const popped: Array<number> = []
    for (let item = queue.pop(); item !== undefined; item = queue.pop()) popped.push(item.at)
    expect(popped).toEqual([1, 3, 5, 7, 9])
  })
})
