import type { CliIo } from './output.ts';

/** A progress line: what is being done, out of how many steps. */
export interface ProgressStep {
  done: number;
  total: number;
  what: string;
}

export interface Progress {
  update(step: ProgressStep): void;
  /** Clears the line, so the report that follows starts on a clean one. */
  finish(): void;
}

const BAR_WIDTH = 24;
/** Redraw this often, so the elapsed time shows the run is alive during a long step. */
const REDRAW_MS = 250;
const noProgress: Progress = { update() {}, finish() {} };

/**
 * A single progress line on the error stream, redrawn in place — only when
 * it is a terminal. Redirected output (a file, a pipe, CI) gets nothing, so
 * logs carry no carriage-return debris.
 */
export function terminalProgress(io: CliIo, label: string): Progress {
  const terminal = io.terminal?.();
  if (!terminal) return noProgress;
  const started = Date.now();
  let current: ProgressStep | undefined;
  const draw = () => {
    if (!current) return;
    const line = `${renderProgress(label, current)} (${formatElapsed(Date.now() - started)})`;
    io.err(`\r${clip(line, terminal.columns - 1)}\x1b[K`);
  };
  const timer = setInterval(draw, REDRAW_MS);
  timer.unref();
  return {
    update(step) {
      current = step;
      draw();
    },
    finish() {
      clearInterval(timer);
      if (current) io.err('\r\x1b[K');
      current = undefined;
    },
  };
}

/** `reconcile [#########···············] 1/3 entity customer` */
export function renderProgress(label: string, step: ProgressStep): string {
  const fraction = step.total > 0 ? Math.min(1, Math.max(0, step.done / step.total)) : 1;
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = `${'#'.repeat(filled)}${'·'.repeat(BAR_WIDTH - filled)}`;
  return `${label} [${bar}] ${step.done}/${step.total} ${step.what}`;
}

function formatElapsed(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function clip(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, Math.max(0, width - 1))}…` : text;
}
