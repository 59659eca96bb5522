#!/usr/bin/env node
// End-to-end: the browser demo (web/index.html) trains the MLP through the WASM package in
// headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core) and the loss falls.
// Prints TAP-style `ok`/`not ok` lines and the plain summary `N passed, N failed`.
import { chromium } from 'playwright-core';
import { serve } from './serve-web.mjs';

const CHROMIUM = process.env.WEFT_CHROMIUM ?? '/usr/bin/chromium';
const { server, url } = await serve(0);
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
let [passed, failed] = [0, 0];
const check = (ok, title, detail = '') => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - ${title}${detail ? `: ${detail}` : ''}`);
};
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => window.weftRun && (window.weftRun.done || window.weftRun.error), null, {
    timeout: 120_000,
  });
  const run = await page.evaluate(() => window.weftRun);
  check(run.error === null && errors.length === 0, 'the page trains without an error', run.error ?? errors.join('; '));
  check(run.target === 'wasm32-wasip1', 'the page runs the WASM package', String(run.target));
  const first = run.losses.slice(0, 10).reduce((a, b) => a + b, 0) / 10;
  const last = run.losses.slice(-10).reduce((a, b) => a + b, 0) / 10;
  check(run.steps === 150 && run.losses.every(Number.isFinite), 'every step reports a finite loss', `${run.steps} steps`);
  check(last < 0.7 * first, 'the loss falls (mean of the last 10 steps < 0.7 x the first 10)', `${first.toFixed(4)} -> ${last.toFixed(4)}`);
  const painted = await page.evaluate(() => {
    const c = document.getElementById('curve');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    return d.some((v, i) => i % 4 === 3 && v > 0);
  });
  check(painted, 'the loss curve is drawn');
} finally {
  await browser.close();
  server.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
