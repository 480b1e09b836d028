/**
 * How the `baton` command ends. Library code throws typed errors and never
 * exits; `run.ts` maps them to these exit codes and `main.ts` sets
 * `process.exitCode`.
 */
export const EXIT_OK = 0;
/** Something the command tried failed (database unreachable, id not found, wrong state). */
export const EXIT_FAILURE = 1;
/** The command line itself is wrong (unknown option, missing argument, no database URL). */
export const EXIT_USAGE = 2;

/** The command line is wrong; the message says what to type instead. Exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** An operation failed for a reason outside the command line; the message says what to check. Exit code 1. */
export class OperationalError extends Error {
  override name = 'OperationalError';
}
