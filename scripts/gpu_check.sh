#!/usr/bin/env bash
# GPU check for a machine with torch and a GPU but no internet, in one run of
# under 8 minutes: build, CUDA tests, compute-sanitizer, GPU benchmarks.
#   scripts/gpu_check.sh OUT_DIR
# Writes summary.txt, build.log, tests.log, sanitizer.log, bench.txt,
# bench_lif.json, bench_hsic.json and bench_train.json into OUT_DIR.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.txt"
note() { echo "$*" | tee -a "$SUMMARY"; }
# The whole script stays under 8 minutes: each step gets at most its own
# limit and never more than what is left of 450 s.
limit() { local left=$((450 - SECONDS)); echo $(( left < $1 ? (left > 1 ? left : 1) : $1 )); }
: >"$SUMMARY"

note "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1)"
note "torch $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)')"

start=$SECONDS
if ! $PY -m pip install --no-build-isolation --no-deps -e . >"$OUT/build.log" 2>&1; then
  note "BUILD FAILED"; tail -40 "$OUT/build.log"; exit 1
fi
note "build: $((SECONDS - start)) s"

start=$SECONDS
timeout $(limit 240) $PY -m pytest -q -x tests/test_lif.py tests/test_hsic.py tests/test_models.py >"$OUT/tests.log" 2>&1
note "tests: exit $? in $((SECONDS - start)) s: $(tail -1 "$OUT/tests.log")"

start=$SECONDS
timeout $(limit 120) compute-sanitizer --tool memcheck --error-exitcode 3 $PY scripts/sanitize_kernels.py >"$OUT/sanitizer.log" 2>&1
note "compute-sanitizer memcheck: exit $? in $((SECONDS - start)) s: $(grep -E 'ERROR SUMMARY|done' "$OUT/sanitizer.log" | tr '\n' ' ')"

start=$SECONDS
timeout $(limit 180) $PY -m pysnn bench lif --device cuda --rounds 20 --json "$OUT/bench_lif.json" >"$OUT/bench.txt" 2>&1
note "bench lif: exit $? in $((SECONDS - start)) s"
tee -a "$SUMMARY" <"$OUT/bench.txt"

start=$SECONDS
timeout $(limit 150) $PY -m pysnn bench hsic --device cuda --rounds 10 --json "$OUT/bench_hsic.json" >>"$OUT/bench.txt" 2>&1
note "bench hsic: exit $? in $((SECONDS - start)) s"
tail -14 "$OUT/bench.txt" | tee -a "$SUMMARY"

start=$SECONDS
timeout $(limit 120) $PY -m pysnn bench train --device cuda --rounds 5 --json "$OUT/bench_train.json" >>"$OUT/bench.txt" 2>&1
note "bench train (MLP): exit $? in $((SECONDS - start)) s"
tail -5 "$OUT/bench.txt" | tee -a "$SUMMARY"
