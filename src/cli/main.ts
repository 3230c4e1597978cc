#!/usr/bin/env node
/**
 * The `plot-engine` executable.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import type * as Runtime from "@effect/platform/Runtime"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { constants } from "node:os"
import * as Cli from "./Cli.js"

// runMain interrupts the program on SIGINT or SIGTERM, then exits 0 as if it had finished. Which signal came is
// kept here for the shell's convention, 128 + its number, which tells a script that the work was cut short. A
// second signal finds no listener left and kills the process at once.
let signal: NodeJS.Signals | undefined
const remember = (received: NodeJS.Signals) => void (signal ??= received)
process.once("SIGINT", remember)
process.once("SIGTERM", remember)

const exitCodeSet = () => (process.exitCode === undefined ? undefined : Number(process.exitCode))

const teardown: Runtime.Teardown = (exit, onExit) => {
  // 0 lets the process end by itself, with the exit code a command set, once stdout is flushed; after a signal,
  // runMain exits at once, with the code given.
  if (Exit.isSuccess(exit)) return onExit(signal === undefined ? 0 : exitCodeSet() ?? 0)
  if (Cause.isInterruptedOnly(exit.cause) && signal !== undefined) {
    // A command may say that a signal is its normal end (simulate, a server).
    return onExit(exitCodeSet() ?? 128 + constants.signals[signal])
  }
  onExit(1)
}

Cli.main(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  // Cli.main reports failures and logs on stderr itself: runMain's reports and logger write to stdout.
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true, teardown })
)
