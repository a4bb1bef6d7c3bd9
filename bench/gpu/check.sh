#!/usr/bin/env bash
# The GPU check of the CUDA path, in one command on a GPU machine that has CUDA, cuBLAS and
# Python but no Node.js and no network. From the package root it:
#   1. prints the GPU, the tools and the cuBLAS libraries and header found;
#   2. builds the native module there for that GPU, checking the cuBLAS declarations against
#      cublas_v2.h where one is found (else it keeps the module that came with the tree);
#   3. prints backendInfo();
#   4. runs the GPU tests (test/native.test.ts, test/cuda*.test.ts) with vitest;
#   5. runs compute-sanitizer memcheck on small shapes (bench/gpu/memcheck.ts);
#   6. writes JSON and logs into the results folder and prints a short table last.
#
#   bash bench/gpu/pack.sh                                    # first, on a build machine
#   source .device/unpack.sh; bash bench/gpu/check.sh DIR     # on the GPU machine
#   bash bench/gpu/check.sh --dry-run                         # anywhere: arguments, tools, files
#
# DIR defaults to $OUT, else bench/out/gpu. Options: --no-build (use build/Release as it is),
# --dry-run (run nothing heavy). Exits 0 when every step passed.
set -uo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

dry=0
build=1
out=""
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    --no-build) build=0 ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "check: unknown option $arg (see --help)" >&2; exit 2 ;;
    *)
      [ -z "$out" ] || { echo "check: one results folder only, got $out and $arg" >&2; exit 2; }
      out=$arg
      ;;
  esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
out=${out:-${OUT:-bench/out/gpu}}
mkdir -p "$out" || { echo "check: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
started=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
elapsed() { echo $(($(date +%s) - $1)); }

# results, one entry per step: status (ok, failed, skipped, dry-run), detail, seconds
declare -A status detail seconds
record() { status[$1]=$2; detail[$1]=$3; seconds[$1]=${4:-0}; }

# ---------------------------------------------------------------------------------------------
step "machine"
gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>/dev/null | head -1)
echo "gpu: ${gpu:-none found}"
if ! have node && [ -f .device/unpack.sh ] && [ "$dry" = 0 ]; then
  # shellcheck disable=SC1091
  source .device/unpack.sh
fi
nvcc=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; } || true)
echo "nvcc: ${nvcc:-none}"
echo "cmake: $(command -v cmake || echo none), ninja: $(command -v ninja || echo none)"
echo "node: $(node --version 2>/dev/null || echo none)"
echo "compute-sanitizer: $(command -v compute-sanitizer || echo none)"
cublas_libs=$( (ldconfig -p 2>/dev/null | grep -o '/[^ ]*libcublas\.so\.[0-9]*$'
  for d in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do ls "$d"/libcublas.so.* 2>/dev/null; done) | sort -u | paste -sd' ' -)
echo "libcublas: ${cublas_libs:-none found}"
cublas_header=""
if [ "$dry" = 0 ]; then
  # the toolkit's own include folder first, then the nvidia wheels of Python, then anywhere
  for dir in "${CUDA_HOME:-/usr/local/cuda}/include" \
    $(python3 -c 'import nvidia; print(" ".join(nvidia.__path__))' 2>/dev/null); do
    [ -n "$cublas_header" ] || cublas_header=$(find "$dir" -name cublas_v2.h 2>/dev/null | head -1)
  done
  [ -n "$cublas_header" ] || cublas_header=$(timeout 60 find / -xdev \( -path /proc -o -path /sys \) \
    -prune -o -name cublas_v2.h -print 2>/dev/null | head -1)
fi
echo "cublas_v2.h: ${cublas_header:-none found}"

# packages the check imports, if they came packed
if [ ! -f node_modules/vitest/package.json ] && [ -f .device/node_modules.tar.xz ] && [ "$dry" = 0 ]; then
  python3 -c "import tarfile; tarfile.open('.device/node_modules.tar.xz').extractall('.')" \
    && echo "node_modules: unpacked from .device/node_modules.tar.xz"
fi
missing=""
for f in CMakeLists.txt native/ops.cc bench/gpu/memcheck.ts bench/gpu/info.ts test/cuda.test.ts \
  test/cuda-device.test.ts test/native.test.ts node_modules/vitest/vitest.mjs \
  node_modules/tsx/package.json node_modules/node-addon-api/napi.h \
  node_modules/node-api-headers/include/node_api.h; do
  [ -e "$f" ] || missing="$missing $f"
done
[ -z "$missing" ] || echo "missing:$missing"

# ---------------------------------------------------------------------------------------------
step "build"
t=$(date +%s)
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
archs=${CONTRANORM_CUDA_ARCHITECTURES:-${arch:+${arch}-real}}
if [ "$dry" = 1 ]; then
  record build dry-run "would build for ${archs:-the default architectures}"
elif [ "$build" = 0 ] || [ -z "$nvcc" ] || ! have cmake; then
  record build skipped "no build here (--no-build, or no nvcc or cmake): build/Release as carried"
else
  generator=$(have ninja && echo Ninja || echo "Unix Makefiles")
  args=(-S . -B build/device -G "$generator" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc"
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$root/build/device/out")
  [ -n "$archs" ] && args+=(-DCONTRANORM_CUDA_ARCHITECTURES="$archs")
  [ -n "$cublas_header" ] && args+=(-DCONTRANORM_CUBLAS_INCLUDE_DIR="$(dirname "$cublas_header")"
    -DCONTRANORM_REQUIRE_CUBLAS_CHECK=ON)
  if cmake "${args[@]}" > "$out/build.log" 2>&1 && cmake --build build/device -j "$(nproc)" >> "$out/build.log" 2>&1; then
    mkdir -p build/Release && cp build/device/out/contranorm.node build/Release/contranorm.node
    checked=$(grep -o 'checking the cuBLAS declarations against .*' "$out/build.log" | head -1)
    record build ok "${archs:-default architectures}; ${checked:-cuBLAS declarations not checked (no cublas_v2.h)}" "$(elapsed "$t")"
  else
    tail -30 "$out/build.log"
    record build failed "see build.log; testing build/Release as carried" "$(elapsed "$t")"
  fi
fi
echo "${status[build]}: ${detail[build]}"
[ -f build/Release/contranorm.node ] || [ "$dry" = 1 ] || echo "build/Release/contranorm.node is missing"

# ---------------------------------------------------------------------------------------------
step "backendInfo()"
if [ "$dry" = 1 ]; then
  record backend dry-run "would print backendInfo()"
elif node --import tsx bench/gpu/info.ts > "$out/backend.json" 2> "$out/backend.err"; then
  cat "$out/backend.json"
  backend=$(node -e 'const r=require(process.argv[1]).backendInfo;
    console.log(r.backend === "cuda" ? `cuda: ${r.device}, ${r.computeCapability}, ${(r.memory / 2 ** 30).toFixed(1)} GiB, ${r.cublas}` : `cpu: ${r.reason}`)' "$out/backend.json")
  record backend "$( [[ $backend == cuda:* ]] && echo ok || echo failed )" "$backend"
else
  cat "$out/backend.err"
  record backend failed "bench/gpu/info.ts failed (see backend.err)"
fi

# ---------------------------------------------------------------------------------------------
step "GPU tests"
t=$(date +%s)
if [ "$dry" = 1 ]; then
  record tests dry-run "would run vitest on test/native.test.ts test/cuda.test.ts test/cuda-device.test.ts"
else
  NO_COLOR=1 timeout 360 node node_modules/vitest/vitest.mjs run test/native.test.ts test/cuda.test.ts \
    test/cuda-device.test.ts --reporter=default --reporter=json --outputFile="$out/vitest.json" \
    2>&1 | tee "$out/tests.log" | grep -v '^ *✓'
  code=${PIPESTATUS[0]}
  if [ -f "$out/vitest.json" ]; then
    counts=$(node -e 'const r=require(process.argv[1]);
      console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`)' "$out/vitest.json")
  else
    counts="no report (vitest exited with $code)"
  fi
  record tests "$( [ "$code" = 0 ] && echo ok || echo failed )" "$counts" "$(elapsed "$t")"
fi

# ---------------------------------------------------------------------------------------------
step "compute-sanitizer memcheck"
t=$(date +%s)
if [ "$dry" = 1 ]; then
  record memcheck dry-run "would run compute-sanitizer --tool memcheck on bench/gpu/memcheck.ts"
elif ! have compute-sanitizer; then
  record memcheck skipped "compute-sanitizer not found"
else
  timeout 150 compute-sanitizer --tool memcheck --print-limit 20 \
    node --import tsx bench/gpu/memcheck.ts > "$out/memcheck.log" 2>&1
  code=$?
  tail -15 "$out/memcheck.log"
  errors=$(grep -o 'ERROR SUMMARY: [0-9]* error' "$out/memcheck.log" | grep -o '[0-9]*' | tail -1)
  if [ "$code" = 0 ] && [ "${errors:-x}" = 0 ]; then
    record memcheck ok "0 errors" "$(elapsed "$t")"
  else
    record memcheck failed "${errors:-unknown} errors, exit $code (see memcheck.log)" "$(elapsed "$t")"
  fi
fi

# ---------------------------------------------------------------------------------------------
failed=0
for s in build backend tests memcheck; do [ "${status[$s]}" = failed ] && failed=1; done
STEPS="build backend tests memcheck" GPU="$gpu" TOTAL=$(elapsed "$started") \
  S_build="${status[build]}" D_build="${detail[build]}" T_build="${seconds[build]}" \
  S_backend="${status[backend]}" D_backend="${detail[backend]}" T_backend="${seconds[backend]}" \
  S_tests="${status[tests]}" D_tests="${detail[tests]}" T_tests="${seconds[tests]}" \
  S_memcheck="${status[memcheck]}" D_memcheck="${detail[memcheck]}" T_memcheck="${seconds[memcheck]}" \
  node -e '
    const e = process.env;
    const steps = e.STEPS.split(" ").map((s) => ({ step: s, status: e[`S_${s}`], detail: e[`D_${s}`], seconds: Number(e[`T_${s}`]) }));
    const commit = require("child_process").spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
    const summary = { date: new Date().toISOString(), commit: commit || null, gpu: e.GPU || null, seconds: Number(e.TOTAL), steps };
    require("fs").writeFileSync(process.argv[1], JSON.stringify(summary, null, 2) + "\n");
  ' "$out/summary.json" 2>/dev/null || echo "check: summary.json not written (no node)"

step "summary (results in $out)"
printf '%-9s | %-8s | %5s | %s\n' step result secs detail
printf '%-9s-+-%-8s-+-%5s-+-%s\n' --------- -------- ----- ------
for s in build backend tests memcheck; do
  printf '%-9s | %-8s | %5s | %s\n' "$s" "${status[$s]}" "${seconds[$s]}" "${detail[$s]}"
done
echo "gpu: ${gpu:-none}; total $(elapsed "$started") s"
exit $failed
