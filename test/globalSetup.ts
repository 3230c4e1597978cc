/** What vitest's main process does around a run: the tarball `npm pack` wrote for it goes when the run ends. */
import { removePackedTarballs } from "./utils/pack.js"

export const teardown = (): void => removePackedTarballs()
