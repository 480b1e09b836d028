// Entry of the `baton` command (bin/baton.js imports this). The only place
// that touches the process's exit status; everything else returns or throws.
import { runCli } from './run.ts';

process.exitCode = await runCli(process.argv.slice(2));
