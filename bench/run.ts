/**
 * Benchmark dispatcher: `tsx bench/run.ts <name> [flags]` (`npm run bench -- <name>`).
 * A benchmark is `bench/<name>.ts` exporting `run(flags)`.
 */
import { existsSync, readdirSync } from 'node:fs';
import { type BenchFlags, parseFlags, USAGE } from './support/args.ts';

const HERE = new URL('./', import.meta.url);

function available(): string[] {
  return readdirSync(HERE)
    .filter((f) => /^[a-z][a-z0-9-]*\.ts$/.test(f) && f !== 'run.ts')
    .map((f) => f.slice(0, -3));
}

async function main(argv: readonly string[]): Promise<void> {
  const [name, ...rest] = argv;
  const file = name && /^[a-z][a-z0-9-]*$/.test(name) ? new URL(`${name}.ts`, HERE) : undefined;
  if (!file || name === 'run' || !existsSync(file)) {
    process.stderr.write(`${USAGE}\nbenchmarks: ${available().join(', ')}\n`);
    process.exitCode = 2;
    return;
  }
  const flags = parseFlags(rest);
  const bench = (await import(file.href)) as { run(flags: BenchFlags): Promise<void> };
  await bench.run(flags);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
