#!/usr/bin/env bash
# `npm run build:wasm`: the napi-rs WASI package of weft-node (wasm32-wasip1, no threads, no CUDA)
# from the same sources as the native addon. Everything it needs comes from Debian's and npm's
# registries; nothing third-party is committed. Steps (docs/WASM.md says why each is needed):
#   1. Debian bookworm's rustc-web (1.96), rust-web-src (std's source) and lld-19 (wasm-ld).
#   2. A wasi-libc new enough for std (trixie's wasi-libc .deb, fetched with a private apt list
#      so the system's sources are untouched, and unpacked, not installed).
#   3. A private sysroot: rustc-web's sysroot by symlink plus wasi-libc as the wasm32-wasip1
#      self-contained directory, where rustc and napi-build look for libc.a and crt1-reactor.o.
#   4. One vendored crates.io source holding the workspace's dependencies and std's own vendored
#      dependencies, because -Zbuild-std resolves std's dependencies through the same source.
#   5. `napi build --target wasm32-wasip1` with -Zbuild-std=std,panic_abort, linking with
#      wasm-ld-19. Output: bindings/weft.wasm32-wasi.wasm, bindings/weft.wasi.cjs (Node loader),
#      bindings/weft.wasi-browser.js and the workers.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TC="$ROOT/target/wasm-toolchain"
TARGET=wasm32-wasip1
mkdir -p "$TC"

say() { echo "build:wasm: $*" >&2; }

# --- 1. Debian packages --------------------------------------------------------------------------
need=()
for pkg in rustc-web rust-web-src lld-19; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${need[*]} (run as root, or: apt-get install ${need[*]})"
    exit 1
  fi
  say "installing ${need[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
fi
RUSTC_WEB=/usr/bin/rustc
CARGO_WEB=/usr/bin/cargo
WASM_LD=/usr/bin/wasm-ld-19
STD_SRC=/usr/lib/rustlib/src/rust/library
for f in "$RUSTC_WEB" "$CARGO_WEB" "$WASM_LD" "$STD_SRC/vendor"; do
  [ -e "$f" ] || { say "expected $f from rustc-web/rust-web-src/lld-19, not found"; exit 1; }
done

# --- 2. wasi-libc from Debian trixie -------------------------------------------------------------
LIBC="$TC/wasi-libc"
if [ ! -f "$LIBC/usr/lib/$TARGET/crt1-reactor.o" ]; then
  APT="$TC/apt"
  mkdir -p "$APT/lists/partial" "$APT/archives/partial"
  # The same Debian mirror the system's apt uses (its main archive, not the security one).
  mirror=$(apt-get indextargets --format '$(SITE) $(RELEASE)' | awk '$2 !~ /-/ {print $1; exit}')
  [ -n "$mirror" ] || { say "no Debian archive in the system's apt sources"; exit 1; }
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" \
    >"$APT/sources.list"
  aptopts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root)
  say "fetching wasi-libc from Debian trixie"
  apt-get "${aptopts[@]}" update -qq >&2
  (cd "$APT" && apt-get "${aptopts[@]}" download wasi-libc >&2)
  rm -rf "$LIBC"
  dpkg-deb -x "$APT"/wasi-libc_*_all.deb "$LIBC"
fi

# --- 3. private sysroot --------------------------------------------------------------------------
SYSROOT="$TC/sysroot"
HOST=$("$RUSTC_WEB" -vV | sed -n 's/^host: //p')
mkdir -p "$SYSROOT/lib/rustlib/$TARGET/lib"
ln -sfn /usr/lib/rustlib/src "$SYSROOT/lib/rustlib/src"
ln -sfn "/usr/lib/rustlib/$HOST" "$SYSROOT/lib/rustlib/$HOST"
ln -sfn /usr/lib/rustlib/etc "$SYSROOT/lib/rustlib/etc"
ln -sfn "$LIBC/usr/lib/$TARGET" "$SYSROOT/lib/rustlib/$TARGET/lib/self-contained"
cat >"$TC/rustc" <<EOF
#!/bin/sh
exec $RUSTC_WEB --sysroot "$SYSROOT" "\$@"
EOF
chmod +x "$TC/rustc"

# --- 4. one vendored source: the workspace's dependencies and std's ------------------------------
VENDOR="$TC/vendor"
if [ ! -f "$VENDOR/.weft-stamp" ] || ! cmp -s "$VENDOR/.weft-stamp" Cargo.lock; then
  say "vendoring crates.io dependencies"
  rm -rf "$VENDOR"
  "$CARGO_WEB" vendor --versioned-dirs --locked --manifest-path Cargo.toml "$VENDOR" >/dev/null
  for dir in "$STD_SRC"/vendor/*/; do
    name=$(basename "$dir")
    [ -e "$VENDOR/$name" ] || ln -s "${dir%/}" "$VENDOR/$name"
  done
  cp Cargo.lock "$VENDOR/.weft-stamp"
fi
cat >"$TC/cargo-config.toml" <<EOF
[source.crates-io]
replace-with = "weft-wasm-vendor"
[source.weft-wasm-vendor]
directory = "$VENDOR"
[target.$TARGET]
linker = "$WASM_LD"
# 128-bit SIMD (every current browser and Node >= 16): gemm's wasm kernels use it.
rustflags = ["-C", "target-feature=+simd128"]
EOF

# --- 5. napi build ------------------------------------------------------------------------------
say "compiling (build-std; slow on few cores)"
start=$(date +%s)
PATH="/usr/bin:$PATH" RUSTC="$TC/rustc" CARGO="$CARGO_WEB" RUSTC_BOOTSTRAP=1 \
  CARGO_UNSTABLE_BUILD_STD=std,panic_abort CARGO_NET_OFFLINE=true \
  npx napi build --platform --release --target "$TARGET" \
  --manifest-path bindings/Cargo.toml -p weft-node -o bindings \
  --target-dir target/wasm --js index.js --dts index.d.ts \
  -- --config "$TC/cargo-config.toml"
say "done in $(($(date +%s) - start)) s"
ls -l bindings/*.wasm bindings/*.wasi* >&2
