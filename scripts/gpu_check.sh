#!/usr/bin/env bash
# GPU check for a borrowed machine with torch and a GPU but no network: one
# run of under 8 minutes, most important step first, every step time-boxed,
# every result written under OUT_DIR as soon as its step ends.
#   scripts/gpu_check.sh OUT_DIR
# OUT_DIR gets summary.txt (one line a step; read it first), build.log,
# sanitizer_{memcheck,racecheck,initcheck}.log, tests.log, gpu_runs.json,
# bench.txt and bench_*.json (rows written as they are measured).
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.txt"
BUDGET=${GPU_CHECK_BUDGET_S:-450}
note() { echo "$*" | tee -a "$SUMMARY"; }
# Each step gets at most its own limit and never more than what is left.
limit() { local left=$((BUDGET - SECONDS)); echo $(( left < $1 ? (left > 1 ? left : 1) : $1 )); }
step() {  # step NAME LIMIT_S LOG COMMAND...: runs it under a timeout, notes exit code and time
  local name=$1 lim log=$3 start=$SECONDS; lim=$(limit "$2"); shift 3
  timeout "$lim" "$@" >"$log" 2>&1
  local rc=$?
  note "$name: exit $rc$([ $rc = 124 ] && echo ' (TIMED OUT)') in $((SECONDS - start)) s (limit $lim s)"
  return $rc
}
: >"$SUMMARY"

note "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
note "torch $($PY -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>&1)"

# 1. Build: no network there, so no index; a hung build must not eat the run.
export MAX_JOBS=${MAX_JOBS:-16}
if ! step "build" 200 "$OUT/build.log" $PY -m pip install --no-index --no-build-isolation --no-deps -e .; then
  tail -40 "$OUT/build.log" | tee -a "$SUMMARY"; exit 1
fi

# 2. compute-sanitizer right after the build. PyTorch's caching allocator hands
# out slices of big blocks, which hides most out-of-bounds writes from memcheck:
# it runs with caching off. racecheck (shared memory) and initcheck
# (uninitialised reads) next.
SAN="compute-sanitizer --error-exitcode 3"
sanitizer() {
  step "compute-sanitizer $1" "$2" "$OUT/sanitizer_$1.log" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    $SAN --tool "$1" $PY scripts/sanitize_kernels.py
  note "  $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|done' "$OUT/sanitizer_$1.log" | tr '\n' ' ')"
}
sanitizer memcheck 90

# 3. The CUDA tests only (CPU cases ran on the CPU machines), all of them, slowest listed.
step "CUDA tests" 120 "$OUT/tests.log" $PY -m pytest -q -k cuda --durations=10 tests
note "  $(tail -1 "$OUT/tests.log")"

sanitizer racecheck 60
sanitizer initcheck 60

# 4. What never ran on a GPU before: training per rule (fused vs reference),
# torch.compile of a model step, LIF above 2^31 elements, HSIC under TF32.
step "training and kernel checks" 90 "$OUT/gpu_runs.log" $PY scripts/gpu_runs.py "$OUT/gpu_runs.json"
tail -15 "$OUT/gpu_runs.log" | tee -a "$SUMMARY"

# 5. Benchmarks, eager references only (compiling them inside a tight limit
# could lose every row); rows are written as they are measured.
step "bench lif" 40 "$OUT/bench_lif.txt" $PY -m pysnn bench lif --device cuda --rounds 20 --no-compile \
  --json "$OUT/bench_lif.json"
step "bench lif-pool" 30 "$OUT/bench_lif_pool.txt" $PY -m pysnn bench lif-pool --device cuda --rounds 20 --no-compile \
  --json "$OUT/bench_lif_pool.json"
step "bench hsic" 60 "$OUT/bench_hsic.txt" $PY -m pysnn bench hsic --device cuda --rounds 10 --no-compile \
  --json "$OUT/bench_hsic.json"
step "bench train MLP" 45 "$OUT/bench_train_mlp.txt" $PY -m pysnn bench train --device cuda --rounds 5 \
  --json "$OUT/bench_train_mlp.json"
step "bench train VGG8" 60 "$OUT/bench_train_vgg8.txt" $PY -m pysnn bench train --model vgg8 --batch 32 \
  --device cuda --rounds 3 --json "$OUT/bench_train_vgg8.json"
cat "$OUT"/bench_*.txt >"$OUT/bench.txt" 2>/dev/null

# 6. Optional, with what time is left: the torch.compile'd references.
step "bench lif (with torch.compile)" 60 "$OUT/bench_lif_compiled.txt" $PY -m pysnn bench lif --device cuda \
  --rounds 10 --json "$OUT/bench_lif_compiled.json"
cat "$OUT"/bench_*.txt >"$OUT/bench.txt" 2>/dev/null
note "== done in $SECONDS s"
