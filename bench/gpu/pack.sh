#!/usr/bin/env bash
# Prepares, on a build machine, what the GPU check needs on a GPU machine that has no Node.js and
# no network, all under .device/ (ignored by git):
#   .device/node.xz, .device/unpack.sh   Node itself (made by ../shared/tools/device-node.sh)
#   .device/node_modules.tar.xz          the packages the check imports (bench/gpu/modules.mjs)
# and builds the native module here, so that build/Release can travel as a fallback.
#
#   bash bench/gpu/pack.sh                 # from the package root
#
# Then, on the GPU machine, from the package root, with .device and build/Release carried along:
#   source .device/unpack.sh; bash bench/gpu/check.sh "$OUT"
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

# node
if [ ! -f .device/node.xz ] || [ ! -f .device/unpack.sh ]; then
  tool=../shared/tools/device-node.sh
  [ -x "$tool" ] || { echo "pack: .device/node.xz is missing and $tool is not there" >&2; exit 1; }
  "$tool"
fi

# packages, repacked only when the lock file changed
mkdir -p .device
lock=$(sha256sum package-lock.json | cut -c1-16)
if [ "$(cat .device/node_modules.lock 2>/dev/null)" != "$lock" ] || [ ! -f .device/node_modules.tar.xz ]; then
  node bench/gpu/modules.mjs > .device/node_modules.txt
  tar -cf - -T .device/node_modules.txt | xz -T0 -6 > .device/node_modules.tar.xz
  echo "$lock" > .device/node_modules.lock
fi

# the module
[ -f build/Release/contranorm.node ] || npm run build:native

du -h .device/node.xz .device/node_modules.tar.xz build/Release/contranorm.node
echo "pack: ready; on the GPU machine: source .device/unpack.sh; bash bench/gpu/check.sh \"\$OUT\""
echo "pack: carry .device and build/Release"
