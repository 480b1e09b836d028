/**
 * Flags shared by every benchmark: `--quick`, `--json`, and the size
 * overrides `--events N`, `--clients N`, `--rows N` (each benchmark reads the
 * ones that apply to it).
 */
export interface BenchFlags {
  quick: boolean;
  json: boolean;
  events: number | undefined;
  clients: number | undefined;
  rows: number | undefined;
  /** `--local`: the saga bench's mode of three local steps in process vs three plain transactions. */
  local: boolean;
  /** `--transport http|nats`: the messaging bench compares the HTTP feed with NATS JetStream when `nats`. */
  transport: 'http' | 'nats';
}

export const USAGE =
  'usage: tsx bench/run.ts <name> [--quick] [--json] [--events N] [--clients N] [--rows N] [--transport http|nats] [--local]';

const NUMERIC = { '--events': 'events', '--clients': 'clients', '--rows': 'rows' } as const;

export function parseFlags(argv: readonly string[]): BenchFlags {
  const flags: BenchFlags = {
    quick: false,
    json: false,
    events: undefined,
    clients: undefined,
    rows: undefined,
    transport: 'http',
    local: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--quick') flags.quick = true;
    else if (arg === '--local') flags.local = true;
    else if (arg === '--json') flags.json = true;
    else if (arg === '--transport') {
      const value = argv[++i];
      if (value !== 'http' && value !== 'nats')
        throw new Error(`--transport is http or nats (got ${value}). ${USAGE}`);
      flags.transport = value;
    } else if (arg in NUMERIC) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) {
        throw new Error(`${arg} needs a positive integer (got ${argv[i]}). ${USAGE}`);
      }
      flags[NUMERIC[arg as keyof typeof NUMERIC]] = value;
    } else throw new Error(`unknown flag ${arg}. ${USAGE}`);
  }
  return flags;
}
