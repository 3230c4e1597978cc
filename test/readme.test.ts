/**
 * The README's TypeScript is a user's code: each ```ts block is written as a file of a fresh project in which the
 * packed package is installed as `node_modules/plot-engine` (the peer dependencies are the repository's own, linked;
 * nothing is fetched), and `tsc` checks the files under `strict` (and the repository's stricter options) with
 * `NodeNext` modules; an error is reported at its README line. The blocks that are tests (they import vitest) then
 * run, the TestClock example among them. A block that is deliberately a fragment is marked, on the line before it,
 * with `<!-- not compiled: the reason -->`; every other block is checked.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { packedTarball, root, run } from "./utils/pack.js"

interface Block {
  /** The README's line of the block's first line of code (1-based). */
  readonly line: number
  readonly code: string
  /** Why it is not compiled, when it is marked so. */
  readonly notCompiled: string | undefined
}

const opening = /^\s*```(?:ts|typescript)(?:\s.*)?$/
const closing = /^\s*```\s*$/
const marker = /^\s*<!--\s*not compiled:\s*(.*?)\s*-->\s*$/

/** The ```ts blocks of a Markdown text, each with the reason it is not compiled, if it is marked. */
const typeScriptBlocks = (markdown: string): ReadonlyArray<Block> => {
  const lines = markdown.split("\n")
  const blocks: Array<Block> = []
  for (let i = 0; i < lines.length; i++) {
    if (!opening.test(lines[i])) continue
    let previous = i - 1
    while (previous >= 0 && lines[previous].trim() === "") previous--
    const notCompiled = previous >= 0 ? marker.exec(lines[previous])?.[1] : undefined
    let end = i + 1
    while (end < lines.length && !closing.test(lines[end])) end++
    blocks.push({ line: i + 2, code: lines.slice(i + 1, end).join("\n") + "\n", notCompiled })
    i = end
  }
  return blocks
}

/** A block's file in the project: a test (it imports vitest) is named as one, so that vitest runs it. */
const fileOf = (block: Block): string =>
  `readme-line-${block.line}${/from "(?:@effect\/vitest|vitest)"/.test(block.code) ? ".test.ts" : ".ts"}`

interface Diagnostic {
  readonly file: string | undefined
  readonly line: number
  readonly column: number
  readonly text: string
}

/** `tsc --pretty false --listFiles` output: the files of the program and the diagnostics (with their next lines). */
const parseTsc = (output: string) => {
  const listed: Array<string> = []
  const diagnostics: Array<Diagnostic> = []
  const other: Array<string> = []
  for (const line of output.split("\n")) {
    if (line.trim() === "") continue
    const located = /^(.+?)\((\d+),(\d+)\): (error .*)$/.exec(line)
    if (located !== null) {
      diagnostics.push({ file: located[1], line: Number(located[2]), column: Number(located[3]), text: located[4] })
    } else if (/^error TS\d+/.test(line)) {
      diagnostics.push({ file: undefined, line: 0, column: 0, text: line })
    } else if (/^\s/.test(line) && diagnostics.length > 0) {
      const last = diagnostics.pop()!
      diagnostics.push({ ...last, text: `${last.text}\n${line}` })
    } else if (path.isAbsolute(line)) {
      listed.push(line)
    } else {
      other.push(line)
    }
  }
  return { listed, diagnostics, other }
}

const readme = readFileSync(path.join(root, "README.md"), "utf8")
const blocks = typeScriptBlocks(readme)
const compiled = blocks.filter((block) => block.notCompiled === undefined)
const tests = compiled.filter((block) => fileOf(block).endsWith(".test.ts"))

/**
 * A user's compiler options, as strict as the repository's own: `strict` and beyond, Node's ES modules, the libraries'
 * own types not checked.
 */
const tsconfig = {
  compilerOptions: {
    target: "ES2022",
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    exactOptionalPropertyTypes: true,
    noUnusedLocals: true,
    noUnusedParameters: true,
    verbatimModuleSyntax: true,
    skipLibCheck: true,
    noEmit: true,
    types: ["node"]
  },
  include: ["*.ts"]
}

describe("the README's TypeScript", () => {
  let project = ""
  let tsc: ReturnType<typeof parseTsc> = { listed: [], diagnostics: [], other: [] }

  beforeAll(async () => {
    const tarball = await packedTarball()
    project = mkdtempSync(path.join(tmpdir(), "plot-engine-readme-"))
    const modules = path.join(project, "node_modules")
    mkdirSync(modules)
    // The peer dependencies as the host installs them: here, the repository's (one copy of effect for both sides).
    for (const entry of readdirSync(path.join(root, "node_modules"))) {
      if (!entry.startsWith(".")) {
        symlinkSync(path.join(root, "node_modules", entry), path.join(modules, entry), "junction")
      }
    }
    mkdirSync(path.join(modules, "plot-engine"))
    await run("tar", ["-xzf", tarball, "-C", path.join(modules, "plot-engine"), "--strip-components=1"])
    writeFileSync(
      path.join(project, "package.json"),
      JSON.stringify({ name: "readme-blocks", private: true, type: "module" })
    )
    writeFileSync(path.join(project, "tsconfig.json"), JSON.stringify(tsconfig, null, 2))
    // Each a module (as a file with imports is), whatever it declares: blocks do not see each other's names.
    for (const block of compiled) writeFileSync(path.join(project, fileOf(block)), `${block.code}export {}\n`)
    let output: string
    try {
      output = (await run(
        process.execPath,
        [
          path.join(root, "node_modules", "typescript", "bin", "tsc"),
          "-p",
          project,
          "--pretty",
          "false",
          "--listFiles"
        ],
        { cwd: project, maxBuffer: 64 * 1024 * 1024 }
      )).stdout
    } catch (error) {
      // tsc exits non-zero on errors, which it prints on stdout.
      const failed = error as { stdout?: string; stderr?: string }
      output = `${failed.stdout ?? ""}\n${failed.stderr ?? ""}`
    }
    tsc = parseTsc(output)
  }, 300_000)

  afterAll(() => {
    if (project !== "") rmSync(project, { recursive: true, force: true })
  })

  it("checks every ```ts block but those marked not compiled", () => {
    const fences = readme.match(/^\s*```(?:ts|typescript)(?:\s|$)/gm) ?? []
    const marked = blocks.filter((block) => block.notCompiled !== undefined)
    for (const block of marked) expect(block.notCompiled, `README.md:${block.line - 1}: a reason`).not.toBe("")
    expect(blocks.length).toBe(fences.length)
    expect(compiled.length).toBeGreaterThanOrEqual(fences.length - marked.length)
    expect(compiled.length).toBeGreaterThan(0)
    // Every block's file was in tsc's program, and tsc said nothing about any other file.
    for (const block of compiled) expect(tsc.listed).toContain(path.join(project, fileOf(block)))
    const files = compiled.map(fileOf)
    expect(tsc.diagnostics.filter((diagnostic) => !files.includes(path.basename(diagnostic.file ?? "")))).toEqual([])
    expect(tsc.other).toEqual([])
  })

  it.each(compiled.map((block) => [block.line - 1, block] as const))(
    "the block at README.md:%i compiles against the packed package",
    (_, block) => {
      const file = fileOf(block)
      const errors = tsc.diagnostics
        .filter((diagnostic) => diagnostic.file !== undefined && path.basename(diagnostic.file) === file)
        .map((diagnostic) =>
          `README.md:${block.line + diagnostic.line - 1}:${diagnostic.column} (${file}): ${diagnostic.text}`
        )
      expect(errors).toEqual([])
    }
  )

  it("runs the blocks that are tests, and they pass", async () => {
    expect(tests.filter((block) => block.code.includes("TestClock.adjust")).length).toBeGreaterThan(0)
    const report = path.join(project, "vitest-report.json")
    try {
      await run(
        process.execPath,
        [
          path.join(root, "node_modules", "vitest", "vitest.mjs"),
          "run",
          "--reporter=default",
          "--reporter=json",
          `--outputFile.json=${report}`
        ],
        { cwd: project, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, NO_COLOR: "1" } }
      )
    } catch (error) {
      const failed = error as { stdout?: string; stderr?: string }
      expect.fail(`vitest failed on the README's tests:\n${failed.stdout ?? ""}\n${failed.stderr ?? ""}`)
    }
    const results = JSON.parse(readFileSync(report, "utf8")) as {
      readonly numFailedTests: number
      readonly testResults: ReadonlyArray<
        { readonly name: string; readonly assertionResults: ReadonlyArray<{ readonly status: string }> }
      >
    }
    expect(results.numFailedTests).toBe(0)
    for (const block of tests) {
      const result = results.testResults.find((entry) => path.basename(entry.name) === fileOf(block))
      expect(result, `${fileOf(block)} ran`).toBeDefined()
      expect(result!.assertionResults.length).toBeGreaterThan(0)
      expect(result!.assertionResults.map((assertion) => assertion.status)).toEqual(
        result!.assertionResults.map(() => "passed")
      )
    }
  }, 120_000)
})
