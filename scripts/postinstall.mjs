// Applies the fixes in patches/ to this repository's own node_modules (see patches/README.md). Installed as a
// dependency of another project, the package patches nothing: npm runs this script inside that project's
// node_modules, where neither patch-package nor the patched packages' copies are this repository's (that
// project applies patches/ itself, as patches/README.md says).
import { spawnSync } from "node:child_process"
import { createRequire } from "node:module"
import path from "node:path"
import process from "node:process"

const root = process.cwd()
if (root.split(path.sep).includes("node_modules")) process.exit(0)

let patchPackage
try {
  patchPackage = createRequire(path.join(root, "package.json")).resolve("patch-package/index.js")
} catch {
  // Installed without the devDependencies (`--omit=dev`): the install goes on, and says the clients are unpatched.
  process.stderr.write("plot-engine: patch-package is not installed: the clients run without the fixes in patches/\n")
  process.exit(0)
}
const result = spawnSync(process.execPath, [patchPackage, "--error-on-fail"], { stdio: "inherit" })
process.exit(result.status ?? 1)
