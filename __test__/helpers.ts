// Shared fixtures for the specs: a tiny MLP and a deterministic batch for it, and the CLI as
// users run it (`node dist/cli/main.js` after `npm run build`).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as weft from '../ts/index.js';

/** The built CLI's entry point. */
export const CLI_MAIN = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

/** What a CLI run gave: its exit code and both streams. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The newest save under a checkpoint root written by `trainer.save` / `weft train --save`. */
export function latestSave(root: string): string {
  return path.join(root, fs.readFileSync(path.join(root, 'latest'), 'utf8').trim());
}

/** Runs `weft ARGS...` and resolves (never rejects) with its exit code and output. */
export function runCli(...args: string[]): Promise<CliRun> {
  if (!fs.existsSync(CLI_MAIN)) throw new Error(`${CLI_MAIN} is missing: run 'npm run build' first`);
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_MAIN, ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

export const BATCH = 8;
export const FEATURES = 4;
export const CLASSES = 3;

/** A 4 -> 16 -> 3 MLP classifier with a `logits` output. */
export function tinyMlp(cfg: weft.Config = weft.config()): weft.Model {
  return weft.model(cfg, (m) => {
    const x = m.input('x', [null, FEATURES]);
    const y = m.input('y', [null], 'i32');
    const logits = m.nn.linear(m.nn.linear(x, 16, { name: 'fc1' }).relu(), CLASSES, { name: 'fc2' });
    m.output('logits', logits);
    return m.losses.softmaxCrossEntropy(logits, y);
  });
}

/** A fixed batch whose label is a simple function of the features (learnable). */
export function tinyBatch(): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(BATCH * FEATURES);
  const y = new Int32Array(BATCH);
  for (let r = 0; r < BATCH; r++) {
    for (let c = 0; c < FEATURES; c++) x[r * FEATURES + c] = Math.sin(1 + r * 7 + c * 3);
    y[r] = r % CLASSES;
  }
  return { x, y };
}
