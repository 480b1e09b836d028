import type { Command } from 'commander';

/** Options of the `baton` command itself, accepted before or after a subcommand. */
export interface GlobalOptions {
  databaseUrl?: string;
  schema: string;
  json?: boolean;
  verbose?: boolean;
}

export function addGlobalOptions(program: Command): Command {
  return program
    .option(
      '--database-url <url>',
      'PostgreSQL URL (default: env BATON_DATABASE_URL, then DATABASE_URL; behind a pooler that cannot keep prepared statements, set BATON_PREPARED_STATEMENTS=off)',
    )
    .option('--schema <name>', "schema holding Baton's tables", 'baton')
    .option('--json', 'print one JSON object instead of text')
    .option('--verbose', 'print stack traces of errors');
}
