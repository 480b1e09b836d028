import type { Command } from 'commander';
import { loadMigrations, migrate } from '../../index.ts';
import { checkSchemaName, withDatabase } from '../connection.ts';
import type { GlobalOptions } from '../global-options.ts';
import { type CliIo, printJson, printLines } from '../output.ts';

/** `baton migrate [--print]`: apply Baton's migrations, or print their SQL for review. */
export function registerMigrate(program: Command, io: CliIo): void {
  program
    .command('migrate')
    .description("create or upgrade Baton's tables (safe to run again, and from several processes)")
    .option('--print', 'print the SQL of every migration for review; does not connect')
    .action(async (local: { print?: boolean }, command: Command) => {
      const options = command.optsWithGlobals<GlobalOptions>();
      if (local.print) return printMigrations(io, options);
      await withDatabase(options, io, async (db) => {
        const result = await migrate(db, options.schema);
        const names = new Map(
          (await loadMigrations(options.schema)).map((m) => [m.id, migrationName(m)]),
        );
        if (options.json) return printJson(io, { schema: options.schema, ...result });
        printLines(
          io,
          result.applied.length === 0
            ? [`schema "${options.schema}" is up to date (migration ${result.current}).`]
            : [
                `applied to schema "${options.schema}":`,
                ...result.applied.map((id) => `  ${names.get(id) ?? id}`),
                `now at migration ${result.current}.`,
              ],
        );
      });
    });
}

async function printMigrations(io: CliIo, options: GlobalOptions): Promise<void> {
  const migrations = await loadMigrations(checkSchemaName(options.schema));
  if (options.json) return printJson(io, { schema: options.schema, migrations });
  const parts = migrations.map((m) => `-- migration ${migrationName(m)}\n${m.sql.trimEnd()}\n`);
  io.out(
    `-- Baton migrations for schema "${options.schema}". Each runs in its own transaction;\n` +
      `-- \`baton migrate\` also records them in "${options.schema}".migrations.\n\n${parts.join('\n')}`,
  );
}

function migrationName(m: { id: number; name: string }): string {
  return `${String(m.id).padStart(6, '0')}_${m.name}`;
}
