#!/usr/bin/env node
// `npm run bench`: placeholder. The benchmark harness (ratios against a reference run on the
// same machine, see BENCHMARKS.md) is filled in by its own issue.
console.log('bench: no benchmarks are defined yet (scripts/bench.mjs is a placeholder)');
