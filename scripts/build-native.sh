#!/usr/bin/env bash
# `npm run build:native`: the release addon bindings/weft.<platform>.node and napi-rs's loader
# bindings/index.js + index.d.ts.
# With WEFT_NATIVE_ZIG=1 (set by .ci/run and scripts/build-dist.sh) it is the build the
# linux-x64-gnu package ships: cargo-zigbuild for glibc 2.28, stripped, in its own target dir
# (target/zig), so CI compiles the release addon once for the specs and the package. Zig and
# cargo-zigbuild come from PyPI (scripts/zig-toolchain.sh). Without it, the host toolchain builds
# for the running platform (what a contributor on any machine gets from `npm install`).
set -euo pipefail
cd "$(dirname "$0")/.."
args=(--platform --release --manifest-path bindings/Cargo.toml -p weft-node -o bindings --js index.js --dts index.d.ts)
if [ "${WEFT_NATIVE_ZIG:-}" = 1 ]; then
  ZIG_BIN=$(bash scripts/zig-toolchain.sh)
  PATH="$ZIG_BIN:$PATH" exec npx napi build "${args[@]}" --strip --cross-compile \
    --target x86_64-unknown-linux-gnu.2.28 --target-dir target/zig
fi
exec npx napi build "${args[@]}"
