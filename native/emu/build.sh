#!/usr/bin/env bash
# Builds the native module against CPU stand-ins of the CUDA runtime, cuBLAS and the driver
# (native/emu), into build/emu: a way to run the module's host code and kernels, and the GPU
# suites, on a machine without a GPU. Each thread of a kernel runs as a fiber, blocks one after
# another; memory from cudaMalloc starts as NaN. It checks logic (indices, masks, reductions,
# the products' transposes, the binding), not speed and not races between blocks.
#
#   bash native/emu/build.sh
#   LD_LIBRARY_PATH=build/emu/lib CONTRANORM_NATIVE_PATH=build/emu/contranorm.node \
#     npx vitest run test/cuda.test.ts test/cuda-device.test.ts
#
# EMU_DEVICE_MEMORY sets the emulated device memory in bytes (default 8 GiB).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
out=build/emu
mkdir -p "$out/src" "$out/lib"

# the kernels as C++: launches become emu::launch calls, dynamic shared memory a pointer
python3 - "$out/src" <<'PY'
import pathlib, re, sys
for cu in sorted(pathlib.Path('native').glob('*.cu')):
    s = cu.read_text()
    s = re.sub(r'(\w+(?:<[^<>;]*>)?)\s*<<<(.*?)>>>\s*\(',
               lambda m: f'::emu::launch({m.group(1)}, {m.group(2)}, ', s, flags=re.S)
    s = re.sub(r'extern\s+__shared__\s+(\w+)\s+(\w+)\[\];',
               r'\1* \2 = ::emu::dynamicSharedAs<\1>();', s)
    (pathlib.Path(sys.argv[1]) / f'{cu.stem}_cu.cc').write_text(f'#line 1 "{cu}"\n{s}')
PY

version=$(node -p 'require("./package.json").version')
flags=(-std=c++20 -O2 -g -fPIC -Wall -Wno-unused-function -Wno-unknown-pragmas -Inative/emu -Inative
  -Inode_modules/node-api-headers/include -Inode_modules/node-addon-api
  -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED
  -DCONTRANORM_VERSION="\"$version\"")
g++ "${flags[@]}" -shared -o "$out/contranorm.node" native/addon.cc native/addon_bench.cc \
  native/addon_ops.cc native/addon_tensor.cc native/cublas_loader.cc native/device.cc native/glibc_compat.cc \
  native/ops.cc native/timing.cc "$out"/src/*.cc native/emu/emu.cc -ldl
g++ -std=c++17 -O2 -fPIC -shared -o "$out/lib/libcublas.so.13" native/emu/cublas.cc
echo 'void contranorm_emu_driver(void) {}' | gcc -x c -fPIC -shared -o "$out/lib/libcuda.so.1" -
echo "emu: built $out/contranorm.node; run with LD_LIBRARY_PATH=$out/lib CONTRANORM_NATIVE_PATH=$out/contranorm.node"
