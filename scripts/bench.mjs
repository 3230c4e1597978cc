// Runs the benchmarks (bench/run.ts, with its arguments) on the code as it is compiled for users. tsx, which runs
// the tests and the CLI, keeps every function's name: a call wrapping each closure as it is made, which no compiled
// build has and which cost the engine's path, made of many closures, an eighth more than a bare call. So bench/run.ts
// and the sources it imports are bundled by esbuild without that (the packages stay in node_modules, as a host
// resolves them), next to bench/run.ts so that its paths (results/, ../examples/) hold, and run by node. The processes
// a benchmark starts (the simulator, the fleet benchmark's engines) still run under tsx.
import * as esbuild from "esbuild"
import { spawnSync } from "node:child_process"
import process from "node:process"
import { fileURLToPath, URL } from "node:url"

const outfile = fileURLToPath(new URL("../bench/.run.mjs", import.meta.url))
await esbuild.build({
  entryPoints: [fileURLToPath(new URL("../bench/run.ts", import.meta.url))],
  outfile,
  bundle: true,
  packages: "external",
  platform: "node",
  format: "esm",
  target: "node20",
  logLevel: "warning"
})
const child = spawnSync(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: "inherit" })
process.exit(child.status ?? 1)
