#!/usr/bin/env bash
# GPU check for issue 6: the whole test suite (the CuPy variants run when CuPy sees a
# GPU) and the GPU benchmark, with one log for the report.
#
#   bash benchmarks/gpu_check.sh            # log in $OUT/gpu_check.log, else ./gpu_check.log
#   BENCH_ARGS="--steps 10 --warmup 3" bash benchmarks/gpu_check.sh
#
# Exits non-zero if the tests or the benchmark fail.
set -u -o pipefail
cd "$(dirname "$0")/.."
LOG="${OUT:-.}/gpu_check.log"
BENCH_ARGS="${BENCH_ARGS:---steps 20 --warmup 5}"
status=0

{
  echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  python - <<'PY'
import minidl
cupy = minidl.backend.cupy_module()
print("cupy:", getattr(cupy, "__version__", "not installed"), "| gpu_available:", minidl.gpu_available())
PY
} 2>&1 | tee "$LOG"

echo "== python -m pytest -q" | tee -a "$LOG"
python -m pytest -q -rs 2>&1 | tee -a "$LOG" || status=1

echo "== python benchmarks/bench_gpu.py $BENCH_ARGS" | tee -a "$LOG"
# shellcheck disable=SC2086
python benchmarks/bench_gpu.py $BENCH_ARGS 2>&1 | tee -a "$LOG" || status=1

echo "== done, status $status; log: $LOG" | tee -a "$LOG"
exit "$status"
