#!/usr/bin/env bash
# `npm run build:dist`: what the platform packages ship, then their tarballs (scripts/pack.mjs).
#  - linux-x64-gnu: the addon built with cargo-zigbuild for glibc 2.28 (RHEL 8, Ubuntu 20.04),
#    stripped, into target/dist/native/ (its own target dir: Zig's C toolchain and the host's do
#    not share build outputs). Zig and cargo-zigbuild come from PyPI (scripts/zig-toolchain.sh).
#  - wasm32-wasip1: `npm run build:wasm` (bindings/).
#  - dist/ (tsc), which the main package ships, and the loader bindings/index.js: `npm run build`
#    on a clone has made them; they are rebuilt only when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIG_BIN=$(bash scripts/zig-toolchain.sh)
PATH="$ZIG_BIN:$PATH" npx napi build --platform --release --strip --cross-compile \
  --target x86_64-unknown-linux-gnu.2.28 --manifest-path bindings/Cargo.toml -p weft-node \
  -o target/dist/native --target-dir target/zig --no-js
npm run build:wasm # cargo decides what is stale
[ -f bindings/index.js ] && [ -f dist/index.js ] || npm run build
node scripts/pack.mjs
