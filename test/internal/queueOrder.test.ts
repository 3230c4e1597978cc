import { describe, expect, it } from "@effect/vitest"
import * as QueueOrder from "../../src/internal/queueOrder.js"

describe("QueueOrder", () => {
  it("counts the slots taken before a slot, as a plain scan does, through growth and rebuilds", () => {
    // A fixed pseudo-random walk: takes, leaves and rebuilds over 5,000 slots.
    let seed = 7
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31
    const order = new QueueOrder.QueueOrder()
    let taken: Array<boolean> = []
    const scan = (slot: number) => taken.slice(0, slot).filter(Boolean).length
    for (let step = 0; step < 20_000; step++) {
      const r = random()
      if (r < 0.5) {
        const slot = taken.length
        taken.push(true)
        order.take(slot)
      } else if (r < 0.95 && taken.length > 0) {
        const slot = Math.floor(random() * taken.length)
        taken[slot] = false
        order.leave(slot)
      } else {
        // The queue dropped its front: what is left, renumbered from 0.
        const front = Math.floor(random() * taken.length)
        taken = taken.slice(front)
        order.rebuild(taken.length, (slot) => taken[slot]!)
      }
      const probe = Math.floor(random() * (taken.length + 1))
      expect(order.before(probe)).toBe(scan(probe))
      expect(order.size).toBe(scan(taken.length))
    }
  })

  it("takes and leaves a slot once: a second take or leave changes nothing", () => {
    const order = new QueueOrder.QueueOrder()
    order.take(3)
    order.take(3)
    order.take(100)
    expect([order.size, order.before(4), order.before(101)]).toEqual([2, 1, 2])
    order.leave(3)
    order.leave(3)
    order.leave(5_000)
    expect([order.size, order.before(4), order.before(101)]).toEqual([1, 0, 1])
  })
})
