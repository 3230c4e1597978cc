/**
 * The CLI as a real process, run from source: what the CLI tests and the failover scenarios run.
 */
import * as Effect from "effect/Effect"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"

/** The repository's root, where the CLI runs. */
export const root = fileURLToPath(new URL("../..", import.meta.url))

/** How the process ended, and what it wrote. */
export interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** How long one CLI process may take: startup alone (tsx compiling the sources) takes seconds on a busy machine. */
export const processTimeout = 120_000

/** The environment with only the given provider variables (and deployments file) set. */
export const childEnv = (env: Record<string, string>) => {
  const {
    ANTHROPIC_API_KEY: _b,
    ANTHROPIC_BASE_URL: _d,
    OPENAI_API_KEY: _a,
    OPENAI_BASE_URL: _c,
    PLOT_ENGINE_DEPLOYMENTS_FILE: _e,
    ...base
  } = process.env
  return { ...base, ...env }
}

/** Runs the CLI from source with only the given provider variables set. */
export const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.async<Run>((resume) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "src/cli/main.ts", ...args],
      { cwd: root, env: childEnv(env), timeout: processTimeout },
      (error, stdout, stderr) =>
        resume(
          Effect.succeed({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
        )
    )
  })
