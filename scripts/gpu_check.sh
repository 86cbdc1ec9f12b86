#!/usr/bin/env bash
# The one prepared check for a GPU machine: build in place for the visible GPU, and meanwhile run the
# benchmark's Triton rows once, untimed, so that Triton's kernels compile into its cache then rather than
# inside the bench's time box; then, alone on the GPU, the benchmark's paper preset on CUDA (backends and
# eager, modes fwd, full, inference and inplace, and the backends' training and in-place modes again with
# the generator in launches of its own: *-unfused); then, side by side (none of them is timed), the whole
# test suite with the GPU (and slow) tests, the large property-based profile on CUDA and Triton, and
# compute-sanitizer memcheck + racecheck on a small case; last torch.compile of the reference
# (time-boxed: every shape compiles afresh). The whole check keeps to a budget (GPU_CHECK_BUDGET seconds,
# 540 by default: the device tool stops a call at 600): each step gets its own limit or what is left of
# the budget, whichever is less, a step with no time left is skipped, and the summary is always printed
# (with the issues' performance targets, met or missed: benchmarks/targets.py). GPU_CHECK_SKIP, a comma-
# separated list of steps (any but build: warm_triton, bench, tests, fuzz_cuda, fuzz_triton, sanitizer,
# compile), leaves those out, e.g. to give the suite the whole budget in a second run.
# Writes under $OUT seven files at most (the device tool brings back eight): checks.log (every step's
# output but the suite's, each line led by "[step] ", and the summary), pytest.log (the suite),
# bench.csv/md/png, kernels.csv (where each provider's GPU time goes, per kernel) and compile.csv (the
# torch.compile rows).
#   OUT=/tmp/out scripts/gpu_check.sh          (PYTHON=python3 by default)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check_out}"
PY="${PYTHON:-python3}"
SCRATCH=$(mktemp -d)
mkdir -p "$OUT"
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
BUDGET="${GPU_CHECK_BUDGET:-540}"
SKIP=",${GPU_CHECK_SKIP:-},"
SUMMARY_SECONDS=15  # kept back for the summary
START=$(date +%s)
STATUS="$SCRATCH/status"  # "name|verdict|seconds" per step: steps run in subshells too
CHECKS_LOG="$OUT/checks.log"
export PYTHONUNBUFFERED=1 OUT PY  # for the functions the steps run in `bash -c`

record() {  # record NAME VERDICT SECONDS
  echo "$1|$2|$3" >>"$STATUS"
  echo "== $1: $2 in $3s"
}

# step [--boxed] NAME LIMIT COMMAND...: runs the command, its output appended to checks.log with each
# line led by "[NAME] " (to $LOG as it is where LOG is set), under a time limit of LIMIT seconds or what
# is left of the budget, whichever is less; skipped when GPU_CHECK_SKIP names it or under 15 s are left.
# --boxed: stopping at the limit counts as done (a time box), not as a failure.
step() {
  local boxed=0
  [ "$1" = --boxed ] && { boxed=1; shift; }
  local name=$1 limit=$2
  shift 2
  case "$SKIP" in *",$name,"*) record "$name" "left out (GPU_CHECK_SKIP)" 0; return ;; esac
  local left=$((BUDGET - SUMMARY_SECONDS - ($(date +%s) - START)))
  if [ "$left" -lt 15 ]; then record "$name" "skipped (budget spent)" 0; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local begin=$(date +%s) rc
  if [ -n "${LOG:-}" ]; then
    timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
  else
    timeout -k 10 "$limit" "$@" 2>&1 | sed -u "s/^/[$name] /" >>"$CHECKS_LOG"
    rc=${PIPESTATUS[0]}
  fi
  local verdict=pass
  if [ $rc -eq 124 ] && [ $boxed -eq 1 ]; then
    verdict="pass (stopped at its ${limit}s box)"
  elif [ $rc -eq 124 ]; then
    verdict="FAIL (timed out at ${limit}s)"
  elif [ $rc -ne 0 ]; then
    verdict="FAIL (rc=$rc)"
  fi
  record "$name" "$verdict" $(($(date +%s) - begin))
}

build() {  # the host compiler first: an extension built by another g++ than torch's has crashed on throws.
  # DSA_OPS_FORCE_CUDA: a CUDA build that fails fails the step (elsewhere it leaves the CPU kernels alone)
  echo "host compiler: $(command -v "${CXX:-c++}") $("${CXX:-c++}" --version | head -1)"
  $PY -c "import torch; print('torch was built by', *[l.strip(' -') for l in torch.__config__.show().splitlines() if l.strip().startswith('- GCC')])"
  DSA_OPS_FORCE_CUDA=1 $PY setup.py build_ext --inplace && $PY -m dsa_ops.info
}
fuzz() {  # fuzz BACKEND SHARDS: the large property-based profile, 1000 cases split over SHARDS processes
  # (each draws its own random cases), niced so that the suite beside them keeps its CPUs; each line led
  # by "shard I: ". Triton compiles a kernel or two per random case, a second or so each: hence several
  # processes. Fails if a shard fails.
  local backend=$1 shards=$2 i pids=() failed=0
  for ((i = 1; i <= shards; i++)); do
    DSA_OPS_FUZZ_EXAMPLES=$(((1000 + shards - 1) / shards)) nice -n 10 $PY -m pytest tests/test_fuzz.py -q -s -rfEs \
      -p no:cacheprovider -k "$backend" > >(sed -u "s/^/shard $i: /") 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  return $failed
}
sanitize() {  # instrument only this package's kernels (namespace dsa_ops), which keeps it fast; no leak
  # check, as the caching allocator and cuBLAS keep their memory to the end by design
  local only_ours=(--kernel-name kns=dsa_ops)
  compute-sanitizer --tool memcheck --error-exitcode 1 "${only_ours[@]}" \
    $PY scripts/sanitize_case.py &&
    compute-sanitizer --tool racecheck --error-exitcode 1 "${only_ours[@]}" $PY scripts/sanitize_case.py
}

# The extension goes first, so that the warm-up, which imports dsa_ops as the build starts, never has
# the file loaded that the build then rewrites (it needs only the Triton backend).
rm -f dsa_ops/_C*.so
step build 240 bash -c "$(declare -f build); build" &
step --boxed warm_triton 150 $PY -m benchmarks.bench_dsa --device cuda --preset paper --dtypes float32,bfloat16 \
  --providers triton,triton-unfused --modes fwd,full,inference,inplace --warm-up-only &
wait
if grep -q "^build|pass" "$STATUS"; then
  # Timings first and alone on the GPU (the benchmark checks every provider against the reference before
  # timing it, and writes its CSV after every shape; 0.2 s of calls a row, some hundreds to thousands).
  backends=$($PY -c "import dsa_ops
usable = [b for b in ('cuda', 'triton') if dsa_ops.backend_status()[b] is None]
print(','.join(['reference', *usable, *(b + '-unfused' for b in usable)]))")
  step bench 200 $PY -m benchmarks.bench_dsa --device cuda --preset paper \
    --dtypes float32,bfloat16 --providers "$backends" --modes fwd,full,inference,inplace --min-time 0.2 --out "$OUT"
  # Correctness side by side: the suite (with pytest-xdist, where installed, in 6 processes of 2 CPU
  # threads; -v streams each test's outcome, so a run stopped at its limit still names its failures),
  # the large property-based profile (1000 random cases) on CUDA (one process, 60 s box) and on Triton
  # (6 processes, 240 s box), time-boxed (a failure still fails it; its lines in checks.log count each
  # process's passed cases every 10), and the sanitizer.
  parallel=()
  PYTHONPATH="$TEST_PYTHONPATH" $PY -c "import xdist" 2>/dev/null && parallel=(-n 6)
  LOG="$OUT/pytest.log" step tests 300 env PYTHONPATH="$TEST_PYTHONPATH" DSA_OPS_RUN_SLOW=1 OMP_NUM_THREADS=2 \
    $PY -m pytest tests -v -rfEs -p no:cacheprovider --durations=10 "${parallel[@]}" &
  step --boxed fuzz_cuda 60 env PYTHONPATH="$TEST_PYTHONPATH" OMP_NUM_THREADS=2 \
    bash -c "$(declare -f fuzz); fuzz cuda 1" &
  step --boxed fuzz_triton 240 env PYTHONPATH="$TEST_PYTHONPATH" OMP_NUM_THREADS=2 \
    bash -c "$(declare -f fuzz); fuzz triton 6" &
  step sanitizer 180 bash -c "$(declare -f sanitize); sanitize" &
  wait
  step --boxed compile 45 $PY -m benchmarks.bench_dsa --device cuda --preset paper \
    --dtypes float32 --providers reference,compile --out "$SCRATCH/compile"
  cp "$SCRATCH/compile/bench.csv" "$OUT/compile.csv" 2>/dev/null
fi

summary() {
  local failed=0 backend name line verdict
  echo
  echo "device: $($PY -c 'import torch; print(torch.cuda.get_device_name())' 2>/dev/null || echo 'no GPU visible')  arch: $TORCH_CUDA_ARCH_LIST"
  if [ -f "$OUT/pytest.log" ]; then
    echo "tests: $(grep -E '[0-9]+ (passed|failed)' "$OUT/pytest.log" | tail -1)" \
      "(tests failed as they ran: $(grep -cE '\] FAILED | FAILED +\[' "$OUT/pytest.log"))"
  else
    echo "tests: not run"
  fi
  for backend in cuda triton; do  # each shard's last count, added up
    grep -h "^\[fuzz_$backend\] shard " "$CHECKS_LOG" 2>/dev/null |
      sed -n 's/^\[[a-z_]*\] shard \([0-9][0-9]*\): fuzz .* \([0-9][0-9]*\) cases passed.*/\1 \2/p' |
      awk -v backend="$backend" '{ last[$1] = $2 } END { for (s in last) { total += last[s]; n++ }
        printf "fuzz %s: %d random cases passed (%d processes)\n", backend, total, n }'
  done
  $PY - "$OUT/bench.csv" "$OUT/compile.csv" <<'PYEOF'
import csv, os, sys
rows = [r for path in sys.argv[1:] if os.path.exists(path) for r in csv.DictReader(open(path))
        if r["provider"] in ("cuda", "triton", "cuda-unfused", "triton-unfused", "compile")]
print("time as a multiple of x.clone() (wall, and the device's own work), speedup over eager, host time:")
for r in rows:
    print(f"  {r['provider']:<14} {r['case']:<11} split {r['split']:<5} {r['dtype']:<8} {r['mode']:<9} "
          f"{r['x_clone']:>6}x clone  {r['gpu_x_clone']:>6}x device  {r['vs_eager']:>7} vs eager  "
          f"{r['host_ms']:>7} ms host")
PYEOF
  [ -f "$OUT/bench.csv" ] && $PY -m benchmarks.targets "$OUT/bench.csv"
  printf '%-12s %-34s %s\n' step result seconds
  for name in build warm_triton bench tests fuzz_cuda fuzz_triton sanitizer compile; do
    line=$(grep "^$name|" "$STATUS" | tail -1)
    verdict=${line#*|}
    verdict=${verdict%|*}
    printf '%-12s %-34s %s\n' "$name" "${verdict:-not run (build failed)}" "${line##*|}"
    case "$verdict" in pass* | "left out"*) ;; *) failed=1 ;; esac
  done
  return $failed
}

summary | tee -a "$CHECKS_LOG"
failed=${PIPESTATUS[0]}
rm -rf "$SCRATCH"
exit $failed
