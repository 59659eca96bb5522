#!/usr/bin/env bash
# `bash scripts/test-qemu-arm64.sh`: runs the linux-arm64-gnu package (scripts/build-cross.sh,
# then `node scripts/pack.mjs linux-arm64-gnu`) on an arm64 Node under qemu-user, as a user's
# install would load it: weft-ml and the platform package unpacked from their tarballs into a
# node_modules, then a two-stage pipeline MLP trained on cpu(4) through the public API; prints
# its losses and which build ran. Everything comes from Debian: qemu-user-static (bookworm) and
# trixie's arm64 nodejs (20.19) with its libraries, fetched with a private apt list and unpacked
# under target/arm64-run/ (nothing is installed on the system). Not part of CI (qemu is slow).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=$PWD/target/arm64-run
APT=$RUN/apt
mkdir -p "$APT/lists/partial" "$APT/archives/partial"
if [ ! -x "$RUN/qemu/usr/bin/qemu-aarch64-static" ]; then
  (cd "$RUN" && apt-get download qemu-user-static >&2 && dpkg-deb -x qemu-user-static_*.deb qemu)
fi
if [ ! -x "$RUN/root/usr/bin/node" ]; then
  touch "$APT/status"
  mirror=$(apt-get indextargets --format '$(SITE) $(RELEASE)' | awk '$2 !~ /-/ {print $1; exit}')
  echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$APT/sources.list"
  opts=(-o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status" -o "Dir::Cache=$APT"
    -o Debug::NoLocking=1 -o APT::Architecture=arm64 -o APT::Architectures::=arm64
    -o APT::Sandbox::User=root -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null)
  apt-get "${opts[@]}" update -qq >&2
  apt-get "${opts[@]}" install --download-only -y -qq nodejs >&2
  mkdir -p "$RUN/root"
  for deb in "$APT"/archives/*.deb; do dpkg-deb -x "$deb" "$RUN/root"; done
  [ -e "$RUN/root/lib" ] || ln -s usr/lib "$RUN/root/lib"
fi
APP=$RUN/app
VERSION=$(node -p "require('./package.json').version")
rm -rf "$APP" && mkdir -p "$APP/node_modules"
for pkg in weft-ml weft-ml-linux-arm64-gnu; do
  mkdir -p "$APP/node_modules/$pkg"
  tar xzf "target/dist/tarballs/$pkg-$VERSION.tgz" -C "$APP/node_modules/$pkg" --strip-components=1
done
cat >"$APP/train.cjs" <<'JS'
const weft = require('weft-ml');
(async () => {
  const model = weft.mlp({ sizes: [16, 32, 32, 4], stages: 2 }, weft.config({ pipeline: { numMicroBatch: 2 } }));
  const trainer = await weft.compile(model, { batch: 16, devices: weft.cpu(4), seed: 3, optimizer: weft.optim.adam({ lr: 1e-2 }) });
  const x = Float32Array.from({ length: 16 * 16 }, (_, i) => Math.sin(i * 0.37));
  const y = Int32Array.from({ length: 16 }, (_, i) => i % 4);
  const losses = [];
  for (let s = 0; s < 5; s++) losses.push((await trainer.step({ x, y })).loss);
  console.log(JSON.stringify({ arch: process.arch, runtime: weft.runtime(), losses }));
})().catch((err) => { console.error(err.message); process.exit(1); });
JS
cd "$APP" && "$RUN/qemu/usr/bin/qemu-aarch64-static" -L "$RUN/root" "$RUN/root/usr/bin/node" train.cjs
