#!/usr/bin/env bash
# The one prepared check for a GPU machine: build in place for the visible GPU, run the whole test suite
# with the GPU (and slow) tests, the large property-based profile on CUDA and Triton, compute-sanitizer
# memcheck + racecheck on a small case, the benchmark's paper preset on CUDA (backends and eager, in the
# modes fwd, full, inference and inplace; then torch.compile of the reference, time-boxed since every
# shape compiles afresh). Every step has its own time limit; the whole check took about 6 minutes on an
# H100. Writes under $OUT its logs (one per step, one per fuzzed backend), bench.csv/md, kernels.csv
# (where each provider's GPU time goes, per kernel) and compile/bench.csv/md, and prints a summary last.
#   OUT=/tmp/out scripts/gpu_check.sh          (PYTHON=python3 by default)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT/compile"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
# The system compilers (the extension built there by /opt/gcc's g++ crashed at its first C++ exception);
# CC also becomes nvcc's host compiler. CC/CXX given by the caller win.
if [ -z "${CXX:-}" ] && [ -x /usr/bin/g++ ] && [ -x /usr/bin/gcc ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# A machine without pytest, hypothesis or pytest-xdist (and no network) gets them from gpu_deps/, made by
# `make gpu-deps` on a machine with network and carried along; only the test steps see it.
TEST_PYTHONPATH="$PYTHONPATH"
if ! $PY -c "import pytest, hypothesis, xdist" 2>/dev/null; then
  TEST_PYTHONPATH="$PYTHONPATH:$PWD/gpu_deps"
  [ -d gpu_deps ] || echo "pytest/hypothesis/xdist not importable and gpu_deps/ is missing: run 'make gpu-deps', carry gpu_deps/"
fi
declare -A result seconds

step() {  # step NAME LOG COMMAND...: runs the command, its output appended to LOG, records status and time
  local name=$1 log=$2
  shift 2
  local start=$SECONDS
  "$@" >>"$log" 2>&1
  local rc=$?
  seconds[$name]=$((SECONDS - start))
  result[$name]=$([ $rc -eq 0 ] && echo pass || echo "FAIL (rc=$rc)")
  echo "== $name: ${result[$name]} in ${seconds[$name]}s (log: $log)"
}

export PYTHONUNBUFFERED=1
timeboxed() {  # timeboxed SECONDS COMMAND...: a run stopped at its time box still counts as done
  timeout "$@"
  local rc=$?
  [ $rc -eq 124 ] && echo "(stopped at the ${1}s time box; what ran before that is in the log)"
  return $((rc == 124 ? 0 : rc))
}
build() {  # the host compiler first: an extension built by another g++ than torch's has crashed on throws
  echo "host compiler: $(command -v "${CXX:-c++}") $("${CXX:-c++}" --version | head -1)"
  $PY -c "import torch; print('torch was built by', *[l.strip(' -') for l in torch.__config__.show().splitlines() if l.strip().startswith('- GCC')])"
  $PY setup.py build_ext --inplace && $PY -m dsa_ops.info
}
step build "$OUT/build.log" timeout 240 bash -c "$(declare -f build); PY=$PY; build"
# pytest-xdist, where installed, spreads the tests over 8 processes (2 CPU threads each).
parallel=()
PYTHONPATH="$TEST_PYTHONPATH" $PY -c "import xdist" 2>/dev/null && parallel=(-n 8)
step tests "$OUT/pytest.log" timeout 240 env PYTHONPATH="$TEST_PYTHONPATH" DSA_OPS_RUN_SLOW=1 OMP_NUM_THREADS=2 \
  $PY -m pytest tests -q -rfEs -p no:cacheprovider --durations=10 "${parallel[@]}"
# The large property-based profile (1000 random cases per backend) on CUDA and Triton side by side, each
# time-boxed (a failure still fails the step); $OUT/fuzz_<backend>.log counts the passed cases every 25.
fuzz_backend() {
  timeboxed 60 env PYTHONPATH="$TEST_PYTHONPATH" DSA_OPS_FUZZ_EXAMPLES=1000 OMP_NUM_THREADS=2 \
    $PY -m pytest tests/test_fuzz.py -q -s -rfEs -p no:cacheprovider -k "$1" >"$OUT/fuzz_$1.log" 2>&1
}
fuzz() {
  fuzz_backend cuda & local cuda_job=$!
  fuzz_backend triton & local triton_job=$!
  wait $cuda_job; local cuda_rc=$?
  wait $triton_job; local triton_rc=$?
  grep -h "cases passed" "$OUT"/fuzz_*.log | tail -n 20
  return $((cuda_rc || triton_rc))
}
step fuzz "$OUT/fuzz.log" fuzz
sanitize() {  # instrument only this package's kernels (namespace dsa_ops), which keeps it fast; no leak
  # check, as the caching allocator and cuBLAS keep their memory to the end by design
  local only_ours=(--kernel-name kns=dsa_ops)
  compute-sanitizer --tool memcheck --error-exitcode 1 "${only_ours[@]}" \
    $PY scripts/sanitize_case.py &&
    compute-sanitizer --tool racecheck --error-exitcode 1 "${only_ours[@]}" $PY scripts/sanitize_case.py
}
step sanitizer "$OUT/sanitizer.log" timeout 150 bash -c "$(declare -f sanitize); PY=$PY; sanitize"
backends=$($PY -c "import dsa_ops
print(','.join(['reference'] + [b for b in ('cuda', 'triton') if dsa_ops.backend_status()[b] is None]))")
step bench "$OUT/bench.log" timeout 180 $PY -m benchmarks.bench_dsa --device cuda --preset paper \
  --dtypes float32,bfloat16 --providers "$backends" --modes fwd,full,inference,inplace --out "$OUT"
step compile "$OUT/bench.log" timeboxed 45 $PY -m benchmarks.bench_dsa --device cuda --preset paper \
  --dtypes float32 --providers reference,compile --out "$OUT/compile"

echo
echo "device: $($PY -c 'import torch; print(torch.cuda.get_device_name())')  arch: $TORCH_CUDA_ARCH_LIST"
echo "tests: $(grep -E '(passed|failed|error)' "$OUT/pytest.log" | tail -1)"
$PY - "$OUT/bench.csv" "$OUT/compile/bench.csv" <<'PYEOF'
import csv, os, sys
rows = [r for path in sys.argv[1:] if os.path.exists(path) for r in csv.DictReader(open(path))
        if r["provider"] in ("cuda", "triton", "compile")]
print("time as a multiple of x.clone() (wall, and the device's own work), speedup over eager, host time:")
for r in rows:
    print(f"  {r['provider']:<7} {r['case']:<11} split {r['split']:<5} {r['dtype']:<8} {r['mode']:<9} "
          f"{r['x_clone']:>6}x clone  {r['gpu_x_clone']:>6}x device  {r['vs_eager']:>7} vs eager  "
          f"{r['host_ms']:>7} ms host")
PYEOF
printf '%-10s %-14s %s\n' step result seconds
for name in build tests fuzz sanitizer bench compile; do printf '%-10s %-14s %s\n' "$name" "${result[$name]}" "${seconds[$name]}"; done
for name in build tests fuzz sanitizer bench compile; do [ "${result[$name]}" = pass ] || exit 1; done
