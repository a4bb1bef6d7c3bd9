#!/usr/bin/env bash
# The GPU check of the CUDA path, in one command on a GPU machine that has CUDA, cuBLAS and
# Python with PyTorch but no Node.js and no network. From the package root it:
#   1. prints the GPU, the tools and the cuBLAS libraries and header found;
#   2. builds the native module there for that GPU, checking the cuBLAS declarations against
#      cublas_v2.h where one is found (else it keeps the module that came with the tree);
#   3. prints backendInfo();
#   4. runs the GPU tests (test/native.test.ts, test/cuda*.test.ts) with vitest;
#   5. runs compute-sanitizer memcheck on small shapes (bench/gpu/memcheck.ts);
#   6. runs the throughput benchmark, ours (bench/gpu/bench.ts) then PyTorch's
#      (bench/gpu/torch_bench.py), on the same GPU;
#   7. writes JSON into the results folder and prints the step table, then the benchmark's short
#      table (ours against PyTorch, and the targets) last.
#
#   bash bench/gpu/pack.sh                                    # first, on a build machine
#   source .device/unpack.sh; bash bench/gpu/check.sh DIR     # on the GPU machine
#   bash bench/gpu/check.sh --dry-run                         # anywhere: arguments, tools, plans
#
# DIR defaults to $OUT, else bench/out/gpu. Options:
#   --quick         the benchmarks' smoke runs (about 5x fewer calls)
#   --budget-s S    the whole check, default 540 s (room in 10 minutes to unpack Node first);
#                   each step's time limit comes from what the later steps leave of it
#   --skip LIST     steps not to run, of tests,memcheck,bench,torch
#   --no-build      use build/Release as it is
#   --keep-logs     leave DIR/logs unpacked
#   --dry-run       nothing heavy: the tools found, and the benchmarks' arguments and plans
# CHECK_BENCH_ARGS and CHECK_TORCH_ARGS, when set, are added to the command lines of bench.ts and
# torch_bench.py (to try the check elsewhere: smaller shapes, the emulated module of native/emu).
# DIR then holds summary.json, backend.json, vitest.json, bench.json, torch.json,
# comparison.json and logs.tar.gz (the logs of every step). Exits 0 when every step passed.
set -uo pipefail

usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }

dry=0
build=1
quick=0
keep_logs=0
budget=540
skip=","
out=""
want_value=""
for arg in "$@"; do
  if [ -n "$want_value" ]; then
    case "$want_value" in
      budget) budget=$arg ;;
      skip) skip=",$arg," ;;
    esac
    want_value=""
    continue
  fi
  case "$arg" in
    --dry-run) dry=1 ;;
    --no-build) build=0 ;;
    --quick) quick=1 ;;
    --keep-logs) keep_logs=1 ;;
    --budget-s) want_value=budget ;;
    --budget-s=*) budget=${arg#*=} ;;
    --skip) want_value=skip ;;
    --skip=*) skip=",${arg#*=}," ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "check: unknown option $arg (see --help)" >&2; exit 2 ;;
    *)
      [ -z "$out" ] || { echo "check: one results folder only, got $out and $arg" >&2; exit 2; }
      out=$arg
      ;;
  esac
done
[ -z "$want_value" ] || { echo "check: --${want_value/budget/budget-s} expects a value" >&2; exit 2; }
[[ $budget =~ ^[0-9]+$ ]] && [ "$budget" -ge 60 ] \
  || { echo "check: --budget-s expects whole seconds, at least 60; got $budget" >&2; exit 2; }
for s in ${skip//,/ }; do
  case "$s" in
    tests | memcheck | bench | torch) ;;
    *) echo "check: --skip takes tests, memcheck, bench, torch; got $s" >&2; exit 2 ;;
  esac
done
skipped() { [[ $skip == *",$1,"* ]]; }

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 2
out=${out:-${OUT:-bench/out/gpu}}
mkdir -p "$out" || { echo "check: cannot create $out" >&2; exit 2; }
out=$(cd "$out" && pwd)
logs=$out/logs
mkdir -p "$logs"
started=$(date +%s)
deadline=$((started + budget))
quick_flag=$([ "$quick" = 1 ] && echo --quick || true)

step() { printf '\n== %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
elapsed() { echo $(($(date +%s) - $1)); }

# Seconds a step may run: its cap, or less where the budget must keep `later` seconds for the
# steps after it.
allow() {
  local cap=$1 later=$2 left
  left=$((deadline - $(date +%s) - later))
  [ "$left" -lt "$cap" ] && echo "$left" || echo "$cap"
}
# What the steps named keep back from those before them: each its least useful share, and 20 s
# for the table and the summary.
keep_for() {
  local total=20 s
  for s in "$@"; do
    skipped "$s" && continue
    case "$s" in
      memcheck | bench) total=$((total + 60)) ;;
      torch) total=$((total + 120)) ;;
    esac
  done
  echo "$total"
}
keep_tests=$(keep_for memcheck bench torch)
keep_memcheck=$(keep_for bench torch)
keep_bench=$(keep_for torch)
keep_torch=$(keep_for)

# results, one entry per step: status (ok, failed, skipped, dry-run), detail, seconds
declare -A status detail seconds
record() { status[$1]=$2; detail[$1]=$3; seconds[$1]=${4:-0}; }
STEPS="build backend tests memcheck bench torch"

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
echo "python3: $(python3 --version 2>/dev/null || echo none)"
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
echo "budget: ${budget} s in all$([ "$quick" = 1 ] && echo '; benchmarks quick')$([ "$skip" != , ] && echo "; skipping ${skip:1:-1}")"

# packages the check imports, if they came packed
if [ ! -f node_modules/vitest/package.json ] && [ -f .device/node_modules.tar.xz ] && [ "$dry" = 0 ]; then
  python3 -c "import tarfile; tarfile.open('.device/node_modules.tar.xz').extractall('.')" \
    && echo "node_modules: unpacked from .device/node_modules.tar.xz"
fi
missing=""
for f in CMakeLists.txt native/ops.cc bench/gpu/memcheck.ts bench/gpu/info.ts bench/gpu/bench.ts \
  bench/gpu/torch_bench.py test/cuda.test.ts test/cuda-device.test.ts test/native.test.ts \
  node_modules/vitest/vitest.mjs node_modules/tsx/package.json node_modules/node-addon-api/napi.h \
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
  limit=$(allow 240 $((keep_tests + 90)))
  if timeout "$limit" cmake "${args[@]}" > "$logs/build.log" 2>&1 \
    && timeout "$limit" cmake --build build/device -j "$(nproc)" >> "$logs/build.log" 2>&1; then
    mkdir -p build/Release && cp build/device/out/contranorm.node build/Release/contranorm.node
    checked=$(grep -o 'checking the cuBLAS declarations against .*' "$logs/build.log" | head -1)
    record build ok "${archs:-default architectures}; ${checked:-cuBLAS declarations not checked (no cublas_v2.h)}" "$(elapsed "$t")"
  else
    tail -30 "$logs/build.log"
    record build failed "see logs/build.log; testing build/Release as carried" "$(elapsed "$t")"
  fi
fi
echo "${status[build]}: ${detail[build]}"
[ -f build/Release/contranorm.node ] || [ "$dry" = 1 ] || echo "build/Release/contranorm.node is missing"

# ---------------------------------------------------------------------------------------------
step "backendInfo()"
if [ "$dry" = 1 ]; then
  record backend dry-run "would print backendInfo()"
elif node --import tsx bench/gpu/info.ts > "$out/backend.json" 2> "$logs/backend.err"; then
  cat "$out/backend.json"
  backend=$(node -e 'const r=require(process.argv[1]).backendInfo;
    console.log(r.backend === "cuda" ? `cuda: ${r.device}, ${r.computeCapability}, ${(r.memory / 2 ** 30).toFixed(1)} GiB, ${r.cublas}` : `cpu: ${r.reason}`)' "$out/backend.json")
  record backend "$( [[ $backend == cuda:* ]] && echo ok || echo failed )" "$backend"
else
  cat "$logs/backend.err"
  record backend failed "bench/gpu/info.ts failed (see logs/backend.err)"
fi

# ---------------------------------------------------------------------------------------------
step "GPU tests"
t=$(date +%s)
limit=$(allow 240 "$keep_tests")
if [ "$dry" = 1 ]; then
  record tests dry-run "would run vitest on test/native.test.ts test/cuda.test.ts test/cuda-device.test.ts"
elif skipped tests; then
  record tests skipped "--skip tests"
elif [ "$limit" -lt 30 ]; then
  record tests skipped "no time left in --budget-s $budget"
else
  echo "time limit: $limit s"
  NO_COLOR=1 timeout "$limit" node node_modules/vitest/vitest.mjs run test/native.test.ts test/cuda.test.ts \
    test/cuda-device.test.ts --reporter=default --reporter=json --outputFile="$out/vitest.json" \
    2>&1 | tee "$logs/tests.log" | grep -v '^ *✓'
  code=${PIPESTATUS[0]}
  if [ -f "$out/vitest.json" ]; then
    counts=$(node -e 'const r=require(process.argv[1]);
      console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`)' "$out/vitest.json")
  else
    counts="no report (vitest exited with $code$([ "$code" = 124 ] && echo ", stopped at $limit s"))"
  fi
  record tests "$( [ "$code" = 0 ] && echo ok || echo failed )" "$counts" "$(elapsed "$t")"
fi

# ---------------------------------------------------------------------------------------------
step "compute-sanitizer memcheck"
t=$(date +%s)
limit=$(allow 150 "$keep_memcheck")
if [ "$dry" = 1 ]; then
  record memcheck dry-run "would run compute-sanitizer --tool memcheck on bench/gpu/memcheck.ts"
elif skipped memcheck; then
  record memcheck skipped "--skip memcheck"
elif ! have compute-sanitizer; then
  record memcheck skipped "compute-sanitizer not found"
elif [ "$limit" -lt 30 ]; then
  record memcheck skipped "no time left in --budget-s $budget"
else
  echo "time limit: $limit s"
  timeout "$limit" compute-sanitizer --tool memcheck --print-limit 20 \
    node --import tsx bench/gpu/memcheck.ts > "$logs/memcheck.log" 2>&1
  code=$?
  tail -15 "$logs/memcheck.log"
  errors=$(grep -o 'ERROR SUMMARY: [0-9]* error' "$logs/memcheck.log" | grep -o '[0-9]*' | tail -1)
  if [ "$code" = 0 ] && [ "${errors:-x}" = 0 ]; then
    record memcheck ok "0 errors" "$(elapsed "$t")"
  else
    record memcheck failed "${errors:-unknown} errors, exit $code (see logs/memcheck.log)" "$(elapsed "$t")"
  fi
fi

# ---------------------------------------------------------------------------------------------
# A benchmark step: runs `$@` with a time limit, its output teed to logs/NAME.log; the script's
# own --budget-s is the limit less `margin`, so that it stops starting rows before it is stopped.
bench_step() {
  local name=$1 cap=$2 keep=$3 margin=$4 json=$5
  shift 5
  local t limit code
  t=$(date +%s)
  limit=$(allow "$cap" "$keep")
  if [ "$dry" = 1 ]; then
    if "$@" --dry-run --budget-s "$((limit - margin))" > "$logs/$name.log" 2>&1; then
      cat "$logs/$name.log"
      record "$name" dry-run "arguments and plan checked: $(grep -m1 -o 'rows: [0-9]*' "$logs/$name.log")"
    else
      cat "$logs/$name.log"
      record "$name" failed "its dry run failed (see logs/$name.log)"
    fi
    return
  fi
  if skipped "$name"; then
    record "$name" skipped "--skip $name"
    return
  fi
  if [ "$limit" -lt 45 ]; then
    record "$name" skipped "no time left in --budget-s $budget"
    return
  fi
  echo "time limit: $limit s (its --budget-s $((limit - margin)))"
  timeout "$limit" "$@" --budget-s "$((limit - margin))" 2>&1 | tee "$logs/$name.log"
  code=${PIPESTATUS[0]}
  local rows
  rows=$(node -e 'const r = require(process.argv[1]); const rows = r.rows || [];
    const ok = rows.filter((x) => !x.error).length, skipped = rows.filter((x) => x.error && x.error.startsWith("skipped")).length;
    console.log(`${ok} rows timed, ${skipped} skipped, ${rows.length - ok - skipped} failed${r.complete ? "" : ", incomplete"}`)' \
    "$out/$json" 2>/dev/null || echo "no $json")
  case "$code" in
    0) record "$name" ok "$rows" "$(elapsed "$t")" ;;
    124 | 137) record "$name" failed "stopped at its limit of $limit s; $rows" "$(elapsed "$t")" ;;
    *) record "$name" failed "exit $code; $rows (see logs/$name.log)" "$(elapsed "$t")" ;;
  esac
}

step "benchmark: ours (bench/gpu/bench.ts)"
if [ "$dry" = 1 ] && ! have node; then
  record bench skipped "no node here to check bench/gpu/bench.ts with"
else
  bench_step bench "$([ "$quick" = 1 ] && echo 100 || echo 160)" "$keep_bench" 25 bench.json \
    node --import tsx bench/gpu/bench.ts --out "$out" $quick_flag ${CHECK_BENCH_ARGS:-}
fi

step "benchmark: PyTorch (bench/gpu/torch_bench.py)"
if [ "$dry" = 1 ] && ! have python3; then
  record torch skipped "no python3 here to check bench/gpu/torch_bench.py with"
else
  export PYTHONUNBUFFERED=1
  bench_step torch "$([ "$quick" = 1 ] && echo 240 || echo 360)" "$keep_torch" 60 \
    torch.json python3 bench/gpu/torch_bench.py --out "$out" $quick_flag ${CHECK_TORCH_ARGS:-}
fi

# ---------------------------------------------------------------------------------------------
# the comparison, printed after the step table
table=""
if [ "$dry" = 0 ] && [ -f "$out/bench.json" ] && have node; then
  table=$(node --import tsx bench/gpu/bench.ts --join --out "$out" 2>&1)
fi

failed=0
for s in $STEPS; do [ "${status[$s]}" = failed ] && failed=1; done
summary_env=()
for s in $STEPS; do
  summary_env+=("S_$s=${status[$s]}" "D_$s=${detail[$s]}" "T_$s=${seconds[$s]}")
done
env "${summary_env[@]}" STEPS="$STEPS" GPU="$gpu" TOTAL="$(elapsed "$started")" BUDGET="$budget" \
  QUICK="$quick" node -e '
    const e = process.env;
    const fs = require("fs"), path = require("path");
    const steps = e.STEPS.split(" ").map((s) => ({ step: s, status: e[`S_${s}`], detail: e[`D_${s}`], seconds: Number(e[`T_${s}`]) }));
    const commit = require("child_process").spawnSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim();
    const dir = path.dirname(process.argv[1]);
    const files = ["backend.json", "vitest.json", "bench.json", "torch.json", "comparison.json"].filter((f) => fs.existsSync(path.join(dir, f)));
    const summary = { date: new Date().toISOString(), commit: commit || null, gpu: e.GPU || null,
      seconds: Number(e.TOTAL), budget_s: Number(e.BUDGET), quick: e.QUICK === "1", steps, files };
    fs.writeFileSync(process.argv[1], JSON.stringify(summary, null, 2) + "\n");
  ' "$out/summary.json" 2>/dev/null || echo "check: summary.json not written (no node)"

# the logs as one file, so that the folder holds few files
if [ "$keep_logs" = 0 ] && tar -czf "$out/logs.tar.gz" -C "$out" logs 2>/dev/null; then
  rm -rf "$logs"
fi

step "summary (results in $out)"
printf '%-9s | %-8s | %5s | %s\n' step result secs detail
printf '%-9s-+-%-8s-+-%5s-+-%s\n' --------- -------- ----- ------
for s in $STEPS; do
  printf '%-9s | %-8s | %5s | %s\n' "$s" "${status[$s]}" "${seconds[$s]}" "${detail[$s]}"
done
echo "gpu: ${gpu:-none}; total $(elapsed "$started") s of a ${budget} s budget"
if [ -n "$table" ]; then
  step "benchmark: ours against PyTorch (comparison.json)"
  echo "$table"
fi
exit $failed
