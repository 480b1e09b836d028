/**
 * Benchmark dispatcher: `tsx bench/run.ts <name> [flags]` (`npm run bench -- <name>`).
 * Each benchmark is a module exporting `run(flags)`.
 */
import { type BenchFlags, parseFlags, USAGE } from './support/args.ts';

const BENCHMARKS: Record<string, () => Promise<{ run(flags: BenchFlags): Promise<void> }>> = {
  messaging: () => import('./messaging.ts'),
  reconcile: () => import('./reconcile.ts'),
  saga: () => import('./saga.ts'),
};

async function main(argv: readonly string[]): Promise<void> {
  const [name, ...rest] = argv;
  const load = name === undefined ? undefined : BENCHMARKS[name];
  if (!load) {
    process.stderr.write(`${USAGE}\nbenchmarks: ${Object.keys(BENCHMARKS).join(', ')}\n`);
    process.exitCode = 2;
    return;
  }
  const flags = parseFlags(rest);
  await (await load()).run(flags);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
