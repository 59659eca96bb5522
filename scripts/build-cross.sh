#!/usr/bin/env bash
# `npm run build:cross -- linux-arm64-gnu|linux-x64-musl`: the native addon of a platform package
# whose Rust standard library `rustup target add` would normally provide; rustup cannot here, so
# std is compiled from Debian's rust-web-src (-Zbuild-std on rustc-web, the toolchain that
# `scripts/build-wasm.sh --toolchain-only` prepares) and linked by Zig through cargo-zigbuild
# (glibc 2.28 for gnu; musl as a shared library, -crt-static). Output: target/dist/native/, where
# `node scripts/pack.mjs <platform>` finds it. Not part of CI (each is a full build-std compile).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  linux-arm64-gnu) triple=aarch64-unknown-linux-gnu; target=$triple.2.28; flags="" ;;
  linux-x64-musl) triple=x86_64-unknown-linux-musl; target=$triple; flags="-C target-feature=-crt-static" ;;
  *) echo "build-cross: usage: build-cross.sh linux-arm64-gnu|linux-x64-musl" >&2; exit 2 ;;
esac
bash scripts/build-wasm.sh --toolchain-only
TC=$PWD/target/wasm-toolchain
ZIG_BIN=$(bash scripts/zig-toolchain.sh)
PATH="$ZIG_BIN:/usr/bin:$PATH" RUSTC="$TC/rustc" CARGO=/usr/bin/cargo RUSTC_BOOTSTRAP=1 \
  CARGO_NET_OFFLINE=true RUSTFLAGS="-C strip=symbols $flags" \
  cargo-zigbuild zigbuild --release -p weft-node --manifest-path bindings/Cargo.toml \
  --target "$target" -Zbuild-std=std,panic_abort --target-dir "target/cross-$1" --config "$TC/cargo-config.toml"
mkdir -p target/dist/native
cp "target/cross-$1/$triple/release/libweft_node.so" "target/dist/native/weft.$1.node"
ls -l "target/dist/native/weft.$1.node"
