/** Flags shared by every benchmark: `--quick`, `--json`, `--events N`, `--clients N`, `--rows N`. */
export interface BenchFlags {
  quick: boolean;
  json: boolean;
  events: number | undefined;
  clients: number | undefined;
  rows: number | undefined;
}

const USAGE =
  'usage: tsx bench/run.ts <name> [--quick] [--json] [--events N] [--clients N] [--rows N]';

export function parseFlags(argv: readonly string[]): BenchFlags {
  const flags: BenchFlags = {
    quick: false,
    json: false,
    events: undefined,
    clients: undefined,
    rows: undefined,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') flags.quick = true;
    else if (arg === '--json') flags.json = true;
    else if (arg === '--events' || arg === '--clients' || arg === '--rows') {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) {
        throw new Error(`${arg} needs a positive integer (got ${argv[i]}). ${USAGE}`);
      }
      flags[arg.slice(2) as 'events' | 'clients' | 'rows'] = value;
    } else throw new Error(`unknown flag ${arg}. ${USAGE}`);
  }
  return flags;
}

export { USAGE };
