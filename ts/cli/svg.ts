/**
 * A hand-written SVG line chart of the loss curve (axes, ticks, labels; no dependencies),
 * saved beside a checkpoint as `loss.svg`, with the eval loss as a second curve when evaluated.
 */

const W = 640;
const H = 360;
const PAD = { left: 64, right: 24, top: 40, bottom: 48 };

/** One point of the curve. */
export interface LossPoint {
  readonly step: number;
  readonly loss: number;
}

/**
 * Renders a loss curve (and the eval loss curve, with a legend, when `evalPoints` has any) as a
 * standalone SVG document.
 *
 * @example
 * fs.writeFileSync('loss.svg', lossChart([{ step: 1, loss: 2.3 }, { step: 2, loss: 2.1 }]));
 */
export function lossChart(points: readonly LossPoint[], title = 'training loss', evalPoints: readonly LossPoint[] = []): string {
  const pts = points.filter((p) => Number.isFinite(p.loss));
  const evals = evalPoints.filter((p) => Number.isFinite(p.loss));
  const all = [...pts, ...evals];
  const xs = range(all.map((p) => p.step));
  const ys = pad(range(all.map((p) => p.loss)), 0.05);
  const sx = (x: number): number => PAD.left + ((x - xs.lo) / (xs.hi - xs.lo)) * (W - PAD.left - PAD.right);
  const sy = (y: number): number => H - PAD.bottom - ((y - ys.lo) / (ys.hi - ys.lo)) * (H - PAD.top - PAD.bottom);
  const line = (ps: readonly LossPoint[]): string => ps.map((p, i) => `${i === 0 ? 'M' : 'L'}${fmt(sx(p.step))},${fmt(sy(p.loss))}`).join(' ');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${escape(title)}</text>`,
    axes(),
    ...ticks(xs, sx, 'x'),
    ...ticks(ys, sy, 'y'),
    `<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - 10}" text-anchor="middle">step</text>`,
    `<text x="16" y="${(PAD.top + H - PAD.bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(PAD.top + H - PAD.bottom) / 2})">loss</text>`,
    pts.length > 0 ? `<path d="${line(pts)}" fill="none" stroke="${TRAIN}" stroke-width="1.5"/>` : '',
    ...evalCurve(evals, line, sx, sy),
    '</svg>',
    '',
  ].join('\n');
}

const TRAIN = '#1f77b4';
const EVAL = '#d62728';

/** The eval curve: a line through a dot per evaluation, and a legend naming both curves. */
function evalCurve(evals: readonly LossPoint[], line: (ps: readonly LossPoint[]) => string, sx: (x: number) => number, sy: (y: number) => number): string[] {
  if (evals.length === 0) return [];
  const x = W - PAD.right - 110;
  return [
    `<path d="${line(evals)}" fill="none" stroke="${EVAL}" stroke-width="1.5"/>`,
    ...evals.map((p) => `<circle cx="${fmt(sx(p.step))}" cy="${fmt(sy(p.loss))}" r="2.5" fill="${EVAL}"/>`),
    `<line x1="${x}" y1="${PAD.top + 6}" x2="${x + 20}" y2="${PAD.top + 6}" stroke="${TRAIN}" stroke-width="2"/>`,
    `<text x="${x + 26}" y="${PAD.top + 10}">training loss</text>`,
    `<line x1="${x}" y1="${PAD.top + 22}" x2="${x + 20}" y2="${PAD.top + 22}" stroke="${EVAL}" stroke-width="2"/>`,
    `<text x="${x + 26}" y="${PAD.top + 26}">eval loss</text>`,
  ];
}

function axes(): string {
  const x0 = PAD.left;
  const y0 = H - PAD.bottom;
  return `<path d="M${x0},${PAD.top} L${x0},${y0} L${W - PAD.right},${y0}" fill="none" stroke="black"/>`;
}

function ticks(r: Range, scale: (v: number) => number, axis: 'x' | 'y'): string[] {
  const out: string[] = [];
  for (const v of niceTicks(r)) {
    const p = fmt(scale(v));
    const label = escape(formatTick(v));
    if (axis === 'x') {
      const y0 = H - PAD.bottom;
      out.push(`<line x1="${p}" y1="${y0}" x2="${p}" y2="${y0 + 5}" stroke="black"/>`);
      out.push(`<text x="${p}" y="${y0 + 18}" text-anchor="middle">${label}</text>`);
    } else {
      out.push(`<line x1="${PAD.left - 5}" y1="${p}" x2="${W - PAD.right}" y2="${p}" stroke="#ddd"/>`);
      out.push(`<text x="${PAD.left - 8}" y="${p}" text-anchor="end" dominant-baseline="middle">${label}</text>`);
    }
  }
  return out;
}

interface Range {
  lo: number;
  hi: number;
}

function range(values: readonly number[]): Range {
  if (values.length === 0) return { lo: 0, hi: 1 };
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-12) [lo, hi] = [lo - 0.5, hi + 0.5];
  return { lo, hi };
}

/** Widens a range by `frac` of its span on each side, so the curve does not touch the axes. */
function pad(r: Range, frac: number): Range {
  const d = (r.hi - r.lo) * frac;
  return { lo: r.lo - d, hi: r.hi + d };
}

/** About five round tick values inside the range. */
function niceTicks(r: Range): number[] {
  const raw = (r.hi - r.lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(r.lo / step) * step; v <= r.hi + step * 1e-9; v += step) out.push(v);
  return out;
}

function formatTick(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
}

function fmt(v: number): string {
  return v.toFixed(1);
}

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
