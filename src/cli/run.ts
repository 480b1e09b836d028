import { Command, CommanderError } from 'commander';
import { BatonError, InvalidInputError } from '../index.ts';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, OperationalError, UsageError } from './cli-errors.ts';
import { registerConsumers } from './commands/consumers.ts';
import { registerDashboard } from './commands/dashboard.ts';
import { registerDlq } from './commands/dlq.ts';
import { registerMigrate } from './commands/migrate.ts';
import { ExitStatus, registerReconcile } from './commands/reconcile.ts';
import { registerSagas } from './commands/sagas.ts';
import { registerStatus } from './commands/status.ts';
import { addGlobalOptions } from './global-options.ts';
import { type CliIo, processIo, visibleLines } from './output.ts';

/** The `baton` command tree. Commands write through `io` and throw; they never exit. */
export function buildProgram(io: CliIo): Command {
  const program = new Command('baton')
    .description(
      "Baton's operator commands: migrate the schema, watch the outbox, subscriptions and references, move a stuck subscription on, resolve dead letters, reconcile replicas with their owners, serve the operator dashboard.",
    )
    // Settings before .command(): subcommands inherit them.
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError('(run `baton --help`, or `baton <command> --help`, for usage)');
  addGlobalOptions(program);
  program.addHelpText(
    'after',
    '\nExit codes: 0 success, 1 the operation failed, 2 the command line is wrong (reconcile: 3 differences remain).',
  );
  registerMigrate(program, io);
  registerStatus(program, io);
  registerConsumers(program, io);
  registerDlq(program, io);
  registerReconcile(program, io);
  registerSagas(program, io);
  registerDashboard(program, io);
  return program;
}

/** Runs the command line and returns the exit code; errors are reported on `io.err`. */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT_OK;
  } catch (error) {
    return report(error, io, program.opts<{ verbose?: boolean }>().verbose === true);
  }
}

function report(error: unknown, io: CliIo, verbose: boolean): number {
  // Commander has already printed its message (and help, when asked for).
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
  // The command printed its result already; only the exit status (and a one-line reason) remain.
  if (error instanceof ExitStatus) {
    if (error.message) io.err(`baton: ${visibleLines(error.message)}\n`);
    return error.code;
  }
  const code = exitCodeFor(error);
  io.err(`baton: ${visibleLines(messageFor(error))}\n`);
  if (verbose) io.err(`${visibleLines(stackOf(error))}\n`);
  else if (
    code === EXIT_FAILURE &&
    !(error instanceof BatonError || error instanceof OperationalError)
  ) {
    io.err('(run again with --verbose for the stack trace)\n');
  }
  return code;
}

function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError || error instanceof InvalidInputError) return EXIT_USAGE;
  return EXIT_FAILURE;
}

function messageFor(error: unknown): string {
  if (error instanceof UsageError || error instanceof OperationalError) return error.message;
  if (error instanceof BatonError) return error.message;
  const sqlState = (error as { code?: unknown })?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof sqlState === 'string' && /^[0-9A-Z]{5}$/.test(sqlState)) {
    return `the database refused a statement: ${message} (SQLSTATE ${sqlState}). If Baton's tables were changed by hand, compare them with \`baton migrate --print\`.`;
  }
  return `unexpected error: ${message}. If it persists, report it with the output of --verbose.`;
}

function stackOf(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    parts.push(current instanceof Error ? (current.stack ?? current.message) : String(current));
    current = current instanceof Error ? current.cause : undefined;
    if (current !== undefined) parts.push('caused by:');
  }
  return parts.join('\n');
}
