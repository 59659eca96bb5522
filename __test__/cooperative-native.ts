// Run by cooperative.spec.ts on the WASM build: the threaded native addon's losses for every
// layout of the fixture, as JSON on stdout. Refuses to answer from any other build.
import { LAYOUTS, bindingTarget, train } from './cooperative-fixture.js';

async function main(): Promise<void> {
  const target = bindingTarget();
  if (target === 'wasm32-wasip1') throw new Error('cooperative-native: loaded the WASM build, not the native addon');
  const out: Record<string, number[]> = {};
  for (const name of Object.keys(LAYOUTS)) out[name] = (await train(name, false)).losses;
  process.stdout.write(JSON.stringify({ target, losses: out }));
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
