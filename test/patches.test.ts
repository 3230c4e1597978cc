/**
 * The patches of `patches/` are applied to what runs (`npm ci` runs patch-package from postinstall). Their effects
 * are tested where they show: the mid-stream errors in `test/integration/faults.test.ts`; the decoders made once
 * per toolkit in the pipeline benchmark, and here by what the module holds.
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const require = createRequire(import.meta.url)
const packageDir = (name: string) => path.dirname(require.resolve(`${name}/package.json`))
const read = (name: string, file: string) => readFileSync(path.join(packageDir(name), file), "utf8")

describe("patches", () => {
  it("@effect/ai makes a toolkit's response schemas once (both module formats)", () => {
    for (const file of ["dist/esm/LanguageModel.js", "dist/cjs/LanguageModel.js"]) {
      const source = read("@effect/ai", file)
      expect(source).toContain("function cachedResponseSchema(")
      expect(source.match(/cachedResponseSchema\("/g)?.length).toBe(7)
    }
  })

  it("@effect/ai-openai reads a nested error event and reports response.failed as an error", () => {
    for (const format of ["esm", "cjs"]) {
      expect(read("@effect/ai-openai", `dist/${format}/OpenAiClient.js`)).toContain(
        "The error, as the production API sends it"
      )
      expect(read("@effect/ai-openai", `dist/${format}/OpenAiLanguageModel.js`)).toMatch(
        /case "response\.failed":\s*\{\s*parts\.push\(\{\s*type: "error"/
      )
    }
  })

  it("@effect/ai-anthropic takes any error type in a stream's error event", () => {
    for (const format of ["esm", "cjs"]) {
      expect(read("@effect/ai-anthropic", `dist/${format}/AnthropicClient.js`)).not.toContain(
        "\"request_too_large\", \"rate_limit_error\", \"api_error\", \"overloaded_error\")"
      )
    }
  })
})
