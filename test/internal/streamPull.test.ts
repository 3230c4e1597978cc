import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as StreamPull from "../../src/internal/streamPull.js"

describe("StreamPull.forEachChunk", () => {
  it.effect("hands each chunk over in order, in the caller's fiber, then ends with the stream", () =>
    Effect.gen(function*() {
      const seen: Array<ReadonlyArray<number>> = []
      const fibers = new Set<string>()
      const stream = Stream.make(1, 2, 3).pipe(
        Stream.concat(Stream.fromEffect(Effect.delay(Effect.succeed(4), "1 second"))),
        Stream.concat(Stream.make(5, 6))
      )
      const running = yield* Effect.fork(
        StreamPull.forEachChunk(stream, (chunk) =>
          Effect.andThen(Effect.fiberId, (id) => {
            fibers.add(JSON.stringify(id))
            seen.push(Chunk.toReadonlyArray(chunk))
          }))
      )
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(running)
      expect(seen).toEqual([[1, 2, 3], [4], [5, 6]])
      // Every chunk in the fiber that called, not in a fiber of the stream's own (as `Stream.runForEachChunk` does).
      expect([...fibers]).toEqual([JSON.stringify(running.id())])
    }))

  it.effect("fails with the stream's failure or the handler's, and stops pulling there", () =>
    Effect.gen(function*() {
      const seen: Array<number> = []
      const failing = Stream.make(1, 2).pipe(Stream.concat(Stream.fail("broken")), Stream.concat(Stream.make(3)))
      const streamFailure = yield* Effect.exit(
        StreamPull.forEachChunk(failing, (chunk) => Effect.sync(() => seen.push(...chunk)))
      )
      expect(streamFailure).toEqual(Exit.fail("broken"))
      expect(seen).toEqual([1, 2])

      let pulled = 0
      const counted = Stream.range(1, 10).pipe(Stream.rechunk(1), Stream.tap(() => Effect.sync(() => pulled++)))
      const handlerFailure = yield* Effect.exit(
        StreamPull.forEachChunk(
          counted,
          (chunk) => Chunk.unsafeHead(chunk) === 3 ? Effect.fail("no more") : Effect.void
        )
      )
      expect(handlerFailure).toEqual(Exit.fail("no more"))
      expect(pulled).toBe(3)
    }))

  it.effect("releases the stream's resources when it ends, fails or is interrupted", () =>
    Effect.gen(function*() {
      const released: Array<string> = []
      const held = (name: string, rest: Stream.Stream<number, string>) =>
        Stream.acquireRelease(Effect.succeed(name), () => Effect.sync(() => released.push(name))).pipe(
          Stream.flatMap(() => Stream.concat(Stream.make(1), rest))
        )
      yield* StreamPull.forEachChunk(held("ended", Stream.empty), () => Effect.void)
      yield* Effect.exit(StreamPull.forEachChunk(held("failed", Stream.fail("broken")), () => Effect.void))
      const waiting = yield* Effect.fork(StreamPull.forEachChunk(held("interrupted", Stream.never), () => Effect.void))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(waiting)
      expect(released).toEqual(["ended", "failed", "interrupted"])
    }))
})
