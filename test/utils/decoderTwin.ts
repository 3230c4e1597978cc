/**
 * Checking a fast reader against the schema it stands in for: inputs at and around the schema's bounds, and the
 * check that the reader accepts what the decoder accepts, reads it as the decoder does, and rejects the rest.
 */
import { expect } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"

/**
 * Texts at and around a bound of `max` characters, the bound's own often enough that a reader off by one is caught:
 * at the bound, padded to it, one past it; empty, blank, padded; and no texts.
 */
export const textAround = (max: number) =>
  FastCheck.oneof(
    { weight: 16, arbitrary: FastCheck.string({ maxLength: 6 }).map((s) => `a${s}`) },
    { weight: 2, arbitrary: FastCheck.constantFrom("x".repeat(max), ` ${"x".repeat(max)} `, "x".repeat(max + 1)) },
    { weight: 1, arbitrary: FastCheck.constantFrom("", " ", " a ", "\tb\n") },
    { weight: 1, arbitrary: FastCheck.constantFrom(null, 7, undefined, ["a"], {}) }
  )

/**
 * A check of `read` against `schema`'s decoder (with `options`) on one value: both accept it, the reader making an
 * instance of the same class whose encoding is the decoder's, or both reject it. Returns what the reader made, when
 * both accepted.
 */
export const agreesWithDecoder = <A, I>(
  schema: Schema.Schema<A, I>,
  options: { readonly onExcessProperty: "ignore" | "error" },
  read: (value: unknown) => Either.Either<A, unknown>
) => {
  const decode = Schema.decodeUnknownEither(schema, options)
  const encode = Schema.encodeSync(schema)
  return (value: unknown): A | undefined => {
    const expected = decode(value)
    const made = read(value)
    expect(Either.isRight(made)).toBe(Either.isRight(expected))
    if (Either.isLeft(made) || Either.isLeft(expected)) return undefined
    expect(made.right).toBeInstanceOf((expected.right as object).constructor)
    expect(encode(made.right)).toStrictEqual(encode(expected.right))
    return made.right
  }
}
