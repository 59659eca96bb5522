/**
 * A single-line progress bar for terminals (step/total, loss, latest eval loss, tokens/s, ETA),
 * redrawn in place.
 */

/** Where the bar is drawn: a TTY-like stream. */
export interface BarStream {
  write(s: string): unknown;
  readonly columns?: number;
}

/** Draws training progress on one terminal line. */
export class ProgressBar {
  private readonly started = Date.now();
  private drawn = false;
  /** The latest eval loss, kept on the bar until the next evaluation. */
  private evalLoss: number | undefined;

  constructor(
    private readonly total: number,
    private readonly out: BarStream,
  ) {}

  /** Redraws the bar after step `done` of `total` (counted from the start of this run). */
  update(done: number, loss: number, tokensPerS: number, evalLoss?: number): void {
    if (evalLoss !== undefined) this.evalLoss = evalLoss;
    const elapsed = (Date.now() - this.started) / 1000;
    const eta = done > 0 ? (elapsed / done) * (this.total - done) : NaN;
    const evalText = this.evalLoss === undefined ? '' : `  eval ${this.evalLoss.toFixed(4)}`;
    const text = ` ${done}/${this.total}  loss ${loss.toFixed(4)}${evalText}  ${formatRate(tokensPerS)} tok/s  ETA ${formatDuration(eta)}`;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - text.length - 3));
    const filled = Math.round((done / this.total) * width);
    const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
    this.out.write(`\r${bar}${text}\x1b[K`);
    this.drawn = true;
  }

  /** Ends the line so that later output starts on a fresh one. */
  finish(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}

/** `12.3k`, `950`, `1.2M`. */
export function formatRate(v: number): string {
  if (!Number.isFinite(v)) return '-';
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return v.toFixed(0);
}

/** `1m05s`, `42s`, `-` when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}
