/**
 * The package as `npm pack` writes it, packed once per test run: every test file that needs the tarball shares it.
 * Packing builds `dist/` (the `prepack` script removes and rewrites it), so two files packing at once in the same
 * run would race on `dist/`; the first caller packs, the others wait for its tarball (in a directory named after the
 * run and the sources' last change).
 */
import { execFile, execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { isMainThread } from "node:worker_threads"

/** The repository's root. */
export const root = fileURLToPath(new URL("../..", import.meta.url))

/** How long a waiting caller waits for another's packing (it builds the library: tens of seconds). */
const waitLimitMs = 240_000

/** What the tarball is made of: a change to any of them (in watch mode, say) packs again. */
const sources = [
  "package.json",
  "README.md",
  "LICENSE",
  "tsconfig.json",
  "tsconfig.build.json",
  "src",
  "docs",
  "patches",
  "scripts"
]

/** The latest modification time of a file or of the files under a directory. */
const latestChange = (file: string): number => {
  if (!existsSync(file)) return 0
  const stats = statSync(file)
  return stats.isDirectory()
    ? Math.max(stats.mtimeMs, ...readdirSync(file).map((entry) => latestChange(path.join(file, entry))))
    : stats.mtimeMs
}

/**
 * The checkout, the test run and the version of the sources: the run is vitest's main process, the parent of the
 * forked workers (its default pool) or the process of the worker threads.
 */
const runKey = () =>
  [
    checkoutKey,
    isMainThread ? process.ppid : process.pid,
    Math.floor(Math.max(...sources.map((source) => latestChange(path.join(root, source)))))
  ].join("-")

const checkoutKey = createHash("sha256").update(root).digest("hex").slice(0, 12)

/** Removes the tarballs this run packed; called in vitest's main process when the run ends (`test/globalSetup.ts`). */
export const removePackedTarballs = (): void => {
  const prefix = `plot-engine-pack-run-${checkoutKey}-${process.pid}-`
  for (const entry of readdirSync(tmpdir())) {
    if (entry.startsWith(prefix)) rmSync(path.join(tmpdir(), entry), { recursive: true, force: true })
  }
}

type Outcome = { readonly tarball: string } | { readonly error: string }

/** A command run without blocking the caller's event loop (vitest's worker answers its main process meanwhile). */
export const run = promisify(execFile)

const pack = async (directory: string): Promise<Outcome> => {
  try {
    await run("npm", ["pack", "--pack-destination", directory], {
      cwd: root,
      env: { ...process.env, npm_config_loglevel: "error" }
    })
    const tarball = readdirSync(directory).find((file) => file.endsWith(".tgz"))
    return tarball === undefined
      ? { error: `npm pack wrote no tarball in ${directory}` }
      : { tarball: path.join(directory, tarball) }
  } catch (error) {
    // The message holds npm's standard error.
    return { error: String(error) }
  }
}

const tarballOf = (outcome: Outcome): string => {
  if ("error" in outcome) throw new Error(outcome.error)
  return outcome.tarball
}

/**
 * The path of the tarball `npm pack` wrote for this test run, packing it on the first call. Rejects with npm's error
 * when packing failed, here or in the caller that packed.
 */
export const packedTarball = async (): Promise<string> => {
  const directory = path.join(tmpdir(), `plot-engine-pack-run-${runKey()}`)
  const outcomeFile = path.join(directory, "outcome.json")
  try {
    mkdirSync(directory)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
    // Another caller of this run packs: wait for its outcome.
    const started = Date.now()
    while (!existsSync(outcomeFile)) {
      if (Date.now() - started > waitLimitMs) {
        throw new Error(`no tarball in ${directory} after ${waitLimitMs / 1000} s: is another run packing?`)
      }
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
    return tarballOf(JSON.parse(readFileSync(outcomeFile, "utf8")) as Outcome)
  }
  const outcome = await pack(directory)
  // Written whole, then renamed: a waiter never reads half of it.
  writeFileSync(`${outcomeFile}.partial`, JSON.stringify(outcome))
  renameSync(`${outcomeFile}.partial`, outcomeFile)
  return tarballOf(outcome)
}

/** The paths of the files in a tarball, as `tar` lists them (`package/...`). */
export const tarballFiles = (tarball: string): ReadonlyArray<string> =>
  execFileSync("tar", ["-tzf", tarball], { encoding: "utf8" }).split("\n").filter((line) => line !== "")
