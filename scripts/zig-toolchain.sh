#!/usr/bin/env bash
# Installs the cross toolchain the prebuilt linux packages are built with, from PyPI only: Zig
# (`ziglang`: its own libc headers and glibc/musl stubs for any version) and cargo-zigbuild (a
# prebuilt wheel, so nothing is compiled), with `pip install --target` (no venv module needed)
# under target/ (git-ignored, reused). Prints the bin directory holding `cargo-zigbuild` and `zig`.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIGLANG_VERSION=0.15.2
ZIGBUILD_VERSION=0.24.1
DIR="$PWD/target/zig-toolchain/$ZIGLANG_VERSION-$ZIGBUILD_VERSION"
if [ ! -x "$DIR/bin/zig" ] || [ ! -x "$DIR/bin/cargo-zigbuild" ]; then
  echo "zig-toolchain: installing ziglang $ZIGLANG_VERSION, cargo-zigbuild $ZIGBUILD_VERSION from PyPI" >&2
  rm -rf "$DIR"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
    --target "$DIR" "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION" >&2
  ln -sfn ../ziglang/zig "$DIR/bin/zig"
fi
echo "$DIR/bin"
