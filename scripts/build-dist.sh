#!/usr/bin/env bash
# `npm run build:dist`: what the release packages ship, then their tarballs (scripts/pack.mjs).
#  - linux-x64-gnu: `WEFT_NATIVE_ZIG=1 npm run build:native` (glibc 2.28 through Zig, stripped;
#    a no-op where CI's `npm install` already built it so), copied to target/dist/native/.
#  - wasm32-wasip1: `npm run build:wasm` (bindings/; cargo decides what is stale).
#  - weft-ml: dist/ from `npm run build:ts`.
set -euo pipefail
cd "$(dirname "$0")/.."
WEFT_NATIVE_ZIG=1 npm run build:native
mkdir -p target/dist/native
cp bindings/weft.linux-x64-gnu.node target/dist/native/
npm run build:wasm
npm run build:ts
node scripts/pack.mjs linux-x64-gnu wasm32-wasip1 # the others: a contributor's machine (README)
