/**
 * The package as a host installs it: `npm pack` builds it (its `prepack`) and ships the built library with its
 * types, docs and licence, and nothing of the repository's tests or benchmarks; importing the built main entry
 * loads none of the heavy optional parts (Redis, the OpenTelemetry SDK, protobufjs, chart libraries).
 */
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { beforeAll, describe, expect, it } from "vitest"
import { packedTarball, root, tarballFiles } from "./utils/pack.js"
import { temporaryDirectory } from "./utils/temporaryDirectory.js"

/** Packages the main entry must not load: each belongs to an entry point of its own, or to the CLI. */
const heavy = [
  /\/node_modules\/ioredis\//,
  /\/node_modules\/@opentelemetry\/sdk-/,
  /\/node_modules\/@opentelemetry\/exporter-/,
  /\/node_modules\/@opentelemetry\/resources\//,
  /\/node_modules\/@effect\/opentelemetry\//,
  /\/node_modules\/protobufjs\//,
  /\/node_modules\/chart\.js\//,
  /\/node_modules\/vega/
]

/** Every module that importing `entry` (a file of `dist/`) loads, in a fresh Node process: URLs and paths. */
const modulesLoadedBy = (entry: string): ReadonlyArray<string> => {
  const dir = temporaryDirectory("plot-engine-load-")
  const log = path.join(dir, "loaded.txt")
  writeFileSync(
    path.join(dir, "hooks.mjs"),
    `import { appendFileSync } from "node:fs"
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context)
  appendFileSync(${JSON.stringify(log)}, result.url + "\\n")
  return result
}
`
  )
  writeFileSync(
    path.join(dir, "register.mjs"),
    `import { register } from "node:module"\nregister(${
      JSON.stringify(pathToFileURL(path.join(dir, "hooks.mjs")).href)
    })\n`
  )
  writeFileSync(log, "")
  execFileSync(process.execPath, [
    "--import",
    pathToFileURL(path.join(dir, "register.mjs")).href,
    "--input-type=module",
    "-e",
    // ES modules pass the resolve hook; CommonJS modules required from them land in the require cache.
    `await import(${JSON.stringify(pathToFileURL(path.join(root, "dist", entry)).href)})
const { createRequire } = await import("node:module")
const { appendFileSync } = await import("node:fs")
appendFileSync(${JSON.stringify(log)}, Object.keys(createRequire(import.meta.url).cache).join("\\n") + "\\n")`
  ], { cwd: root, stdio: ["ignore", "ignore", "pipe"] })
  return readFileSync(log, "utf8").split("\n").filter((line) => line !== "")
}

describe("the package", () => {
  let files: ReadonlyArray<string> = []

  beforeAll(async () => {
    files = tarballFiles(await packedTarball())
  }, 240_000)

  it("ships the built library, its types, docs and licence, and no tests or benchmarks", () => {
    for (const file of ["dist/index.js", "dist/index.d.ts", "dist/PlotGeneration.js", "dist/cli/main.js"]) {
      expect(files).toContain(`package/${file}`)
    }
    for (const file of ["dist/ProviderRateLimiter/Redis.js", "dist/Telemetry/OpenTelemetry.js", "dist/PlotEngine.js"]) {
      expect(files).toContain(`package/${file}`)
    }
    for (const file of ["CHANGELOG.md", "LICENSE", "README.md", "package.json", "docs/provider-wire.md"]) {
      expect(files).toContain(`package/${file}`)
    }
    expect(files.filter((file) => /^package\/(test|bench|examples|\.ci|node_modules)\//.test(file))).toEqual([])
  })

  it("exports files that the package holds", () => {
    const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"))
    const targets = Object.values(manifest.exports as Record<string, { types: string; default: string }>)
      .flatMap((target) => [target.types, target.default])
    for (const target of [...targets, manifest.bin["plot-engine"]]) {
      expect(files).toContain(`package/${target.replace(/^\.\//, "")}`)
    }
  })

  it("gives every module of the main entry a subpath of its own", () => {
    const manifest = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"))
    const modules = [
      ...readFileSync(path.join(root, "src/index.ts"), "utf8").matchAll(/export \* as \w+ from "\.\/(.+)\.js"/g)
    ]
      .map((match) => `./${match[1]}`)
    // Before, QuotaSignals had none: a host importing it by its subpath, as the README writes the others, failed.
    expect(modules.filter((module) => !(module in manifest.exports))).toEqual([])
  })

  it("loads no Redis, OpenTelemetry SDK, protobufjs or chart library when its main entry is imported", () => {
    const loaded = modulesLoadedBy("index.js")
    expect(loaded.some((url) => url.includes("/node_modules/effect/"))).toBe(true)
    expect(loaded.filter((url) => heavy.some((pattern) => pattern.test(url)))).toEqual([])
  }, 60_000)

  it("sees what an entry point loads: the Redis and OpenTelemetry entries load theirs", () => {
    const redis = modulesLoadedBy("ProviderRateLimiter/Redis.js")
    expect(redis.some((url) => /\/node_modules\/ioredis\//.test(url))).toBe(true)
    const otel = modulesLoadedBy("Telemetry/OpenTelemetry.js")
    expect(otel.some((url) => /\/node_modules\/@opentelemetry\/sdk-trace-base\//.test(url))).toBe(true)
    expect(otel.some((url) => /\/node_modules\/protobufjs\//.test(url))).toBe(true)
  }, 60_000)

  it("loads no OpenTelemetry SDK for the composition root unless span export is configured", () => {
    const loaded = modulesLoadedBy("PlotEngine.js")
    expect(loaded.some((url) => url.includes("/node_modules/@effect/platform-node/"))).toBe(true)
    expect(loaded.filter((url) => heavy.some((pattern) => pattern.test(url)))).toEqual([])
  }, 60_000)
})
