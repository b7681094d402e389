#!/usr/bin/env bash
# GPU check for issues 5 and 6: the whole test suite (the CuPy variants run when CuPy
# sees a GPU), the GPU step benchmark, and - when CIFAR-10 is at hand - the fast CIFAR-10
# recipe, its PyTorch reference on the same data, and a few ResNet-18 epochs. Every step
# has its own time limit, so one failure or hang does not cost the others; each writes
# its own log.
#
#   bash benchmarks/gpu_check.sh                      # tests + benchmark
#   CIFAR_DIR=DIR bash benchmarks/gpu_check.sh        # + CIFAR-10 runs (DIR holds
#                                                     #   cifar-10-binary.tar.gz)
#   CIFAR_BUILD="python3 build_cifar10.py DIR" ...    # build DIR first, beside the tests
#
# Logs go to $OUT (else ./gpu_logs); the CIFAR runs' histories and curves (not their
# weights) are packed into runs.tgz there. Exits non-zero if any step fails.
set -u -o pipefail
cd "$(dirname "$0")/.."
LOGS="${OUT:-gpu_logs}"
RUNS="${RUNS:-/tmp/minidl_gpu_runs}"
mkdir -p "$LOGS" "$RUNS"
export PYTHONUNBUFFERED=1
PY="$(command -v python || command -v python3)"  # the GPU image has only python3
# The examples import minidl from this checkout, installed or not.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BENCH_ARGS="${BENCH_ARGS:---steps 20 --warmup 5 --breakdown}"
FAST_ARGS="${FAST_ARGS:---eval-every 1}"
RESNET_EPOCHS="${RESNET_EPOCHS:-2}"
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $LOGS/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== [$name] $* (limit ${limit}s) $(date -u +%H:%M:%S)" | tee -a "$LOGS/summary.log"
  local started=$SECONDS
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$LOGS/$name.log"
  echo "== [$name] rc=$rc in $((SECONDS - started))s" | tee -a "$LOGS/summary.log"
  tar czf "$LOGS/runs.tgz" --exclude='*.npz' -C "$RUNS" . 2>/dev/null
  [ "$rc" -eq 0 ] || status=1
}

{
  echo "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import minidl, numpy; c = minidl.backend.cupy_module(); print('numpy', numpy.__version__, '| cupy', getattr(c, '__version__', None), '| gpu_available', minidl.gpu_available())"
} 2>&1 | tee "$LOGS/summary.log"

if [ -n "${CIFAR_BUILD:-}" ]; then
  (eval "$CIFAR_BUILD" >"$LOGS/cifar_build.log" 2>&1) &
  build_pid=$!
fi

parallel=()
if "$PY" -c "import xdist" 2>/dev/null; then parallel=(-n 8); fi
step tests "${TESTS_LIMIT:-200}" "$PY" -m pytest -q -rs -p no:cacheprovider ${parallel[@]+"${parallel[@]}"}

if [ -n "${CIFAR_DIR:-}" ]; then
  if [ -n "${build_pid:-}" ]; then
    wait "$build_pid" || { echo "== CIFAR build failed: see $LOGS/cifar_build.log"; status=1; }
  fi
  # shellcheck disable=SC2086
  step cifar10_fast "${FAST_LIMIT:-200}" "$PY" examples/cifar10_fast.py --device gpu \
    --data-dir "$CIFAR_DIR" --out "$RUNS/fast" $FAST_ARGS
  if "$PY" -c "import torch" 2>/dev/null; then
    step airbench_torch "${TORCH_LIMIT:-90}" "$PY" benchmarks/airbench_torch.py \
      --data-dir "$CIFAR_DIR"
  fi
fi

# shellcheck disable=SC2086
step bench_gpu "${BENCH_LIMIT:-120}" "$PY" benchmarks/bench_gpu.py $BENCH_ARGS

if [ -n "${CIFAR_DIR:-}" ] && [ "$RESNET_EPOCHS" -gt 0 ]; then
  step cifar10_resnet "${RESNET_LIMIT:-150}" "$PY" examples/cifar10_resnet.py --device gpu \
    --data-dir "$CIFAR_DIR" --epochs "$RESNET_EPOCHS" --out "$RUNS/resnet"
fi

echo "== done, status $status" | tee -a "$LOGS/summary.log"
exit "$status"
