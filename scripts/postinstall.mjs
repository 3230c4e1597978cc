// Applies the fixes in patches/ to this repository's own node_modules (see patches/README.md). Installed as a
// dependency of another project, the package patches nothing: npm runs this script inside that project's
// node_modules, where neither patch-package nor the patched packages' copies are this repository's.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import process from "node:process"

const root = process.cwd()
if (process.env.INIT_CWD !== undefined && process.env.INIT_CWD !== root) process.exit(0)
if (!existsSync(`${root}/node_modules/.bin/patch-package`)) {
  process.stderr.write("patch-package is not installed: run npm ci (with the devDependencies) to apply patches/\n")
  process.exit(1)
}
const result = spawnSync(`${root}/node_modules/.bin/patch-package`, ["--error-on-fail"], { stdio: "inherit" })
process.exit(result.status ?? 1)
