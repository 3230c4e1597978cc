/**
 * Directories under the system's temporary one for a test file's fixtures, removed when the file's tests are done,
 * so that running the suite leaves nothing behind.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"

const made: Array<string> = []

// Each test file imports this module afresh (vitest isolates files), so the hook belongs to the importing file.
afterAll(() => {
  for (const directory of made.splice(0)) rmSync(directory, { recursive: true, force: true })
})

/** A new, empty directory named `prefix` and a random tail, removed after the calling file's tests. */
export const temporaryDirectory = (prefix: string): string => {
  const directory = mkdtempSync(path.join(tmpdir(), prefix))
  made.push(directory)
  return directory
}
