/**
 * The engine's shared helpers.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Engine from "../../src/generation/Engine.js"

describe("Engine.sequence", () => {
  it.effect("runs its effects in order and stops at the first failure", () =>
    Effect.gen(function*() {
      const ran: Array<string> = []
      const step = (name: string) => Effect.sync(() => void ran.push(name))
      yield* Engine.sequence(step("a"), Effect.void, step("b"), Effect.void, step("c"))
      expect(ran).toEqual(["a", "b", "c"])
      const failed = yield* Effect.exit(Engine.sequence(step("d"), Effect.fail("no"), step("e")))
      expect(failed).toStrictEqual(Exit.fail("no"))
      expect(ran).toEqual(["a", "b", "c", "d"])
    }))

  it("leaves out the effects that are Effect.void: none left is Effect.void, one left is that effect", () => {
    const one = Effect.sync(() => 1).pipe(Effect.asVoid)
    expect(Engine.sequence()).toBe(Effect.void)
    expect(Engine.sequence(Effect.void, Effect.void)).toBe(Effect.void)
    expect(Engine.sequence(Effect.void, one, Effect.void)).toBe(one)
  })
})
