#!/usr/bin/env bash
# Installs the cross toolchain the prebuilt linux packages are built with, from PyPI only:
# Zig (`ziglang`, its own libc headers and glibc/musl stubs for any version) and cargo-zigbuild
# (a prebuilt wheel, so nothing is compiled), into a venv under target/ (git-ignored, reused).
# Prints the venv's bin directory, which holds `cargo-zigbuild` and `python -m ziglang`.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIGLANG_VERSION=0.15.2
ZIGBUILD_VERSION=0.24.1
VENV="$PWD/target/zig-toolchain/venv"
stamp="$VENV/.weft-$ZIGLANG_VERSION-$ZIGBUILD_VERSION"
if [ ! -f "$stamp" ]; then
  echo "zig-toolchain: installing ziglang $ZIGLANG_VERSION, cargo-zigbuild $ZIGBUILD_VERSION from PyPI" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION" >&2
  touch "$stamp"
fi
echo "$VENV/bin"
