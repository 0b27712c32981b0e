#!/usr/bin/env bash
# Records the learning-curve tables (benchmarks/record_curves.py) in one go on a machine with
# many cores and a GPU: the four MLP tasks on CPU processes (one torch thread each), mnist-cnn
# on processes sharing the GPU, both under one deadline. The tables land in $OUT/curves/,
# the logs in $OUT/. Needs .whl/ with a tunewire wheel (`pip wheel --no-deps . -w .whl`) and
# mlxtend's; protobuf and grpcio wheels there are installed only if the machine's own are
# too old for tunewire's generated code.
#
#   OUT=/tmp/out bash benchmarks/record_curves_device.sh
#
# Settings (environment): DEADLINE_SECONDS (480), MLP_CONFIGS (1024), CNN_CONFIGS (384),
# GPU_WORKERS (4), CPU_WORKERS (cores - GPU_WORKERS - 1), MAX_EPOCHS (each task's own),
# PYTHON (python3), SITE (/tmp/site).
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the tables}"
PYTHON=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
DEADLINE_SECONDS=${DEADLINE_SECONDS:-480}
MLP_CONFIGS=${MLP_CONFIGS:-1024}
CNN_CONFIGS=${CNN_CONFIGS:-384}
GPU_WORKERS=${GPU_WORKERS:-4}
CPU_WORKERS=${CPU_WORKERS:-$(($(nproc) - GPU_WORKERS - 1))}
epochs=()
if [ -n "${MAX_EPOCHS:-}" ]; then epochs=(--max-epochs "$MAX_EPOCHS"); fi
started=$(date +%s)

pip_install() {
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$@"
}
pip_install .whl/tunewire-*.whl .whl/mlxtend-*.whl || exit 1
export PYTHONPATH=$SITE
if ! "$PYTHON" -c "import tunewire.client" 2>/dev/null; then
  echo "this machine's protobuf/grpcio cannot load tunewire's generated code: installing .whl/'s"
  for wheel in .whl/protobuf-*.whl .whl/grpcio-*.whl; do
    if [ -e "$wheel" ]; then pip_install "$wheel" || exit 1; fi
  done
  "$PYTHON" -c "import tunewire.client" || exit 1
fi
"$PYTHON" - <<'PY'
import platform, torch, tunewire.trainer
print(f"python {platform.python_version()}, torch {torch.__version__}, "
      f"cuda {torch.cuda.is_available() and torch.cuda.get_device_name(0)}, "
      f"tunewire from {tunewire.trainer.__path__[0]}")
PY
echo "installed in $(($(date +%s) - started)) s; recording: $CPU_WORKERS CPU workers," \
  "$GPU_WORKERS GPU workers, deadline $DEADLINE_SECONDS s"

mkdir -p "$OUT/curves"
"$PYTHON" -m benchmarks.record_curves --tasks digits-mlp,breast-cancer-mlp,wine-mlp,diabetes-mlp \
  --configs "$MLP_CONFIGS" --workers "$CPU_WORKERS" --device cpu \
  --deadline-seconds "$DEADLINE_SECONDS" --out "$OUT/curves" "${epochs[@]}" \
  >"$OUT/record_cpu.log" 2>&1 &
cpu=$!
"$PYTHON" -m benchmarks.record_curves --tasks mnist-cnn --configs "$CNN_CONFIGS" \
  --workers "$GPU_WORKERS" --device auto \
  --deadline-seconds "$DEADLINE_SECONDS" --out "$OUT/curves" "${epochs[@]}" \
  >"$OUT/record_gpu.log" 2>&1 &
gpu=$!
wait "$cpu"
cpu_rc=$?
wait "$gpu"
gpu_rc=$?

echo "== CPU tasks (exit $cpu_rc)"
tail -n 12 "$OUT/record_cpu.log"
echo "== mnist-cnn (exit $gpu_rc)"
tail -n 12 "$OUT/record_gpu.log"
ls -la "$OUT/curves"
echo "total $(($(date +%s) - started)) s"
[ "$cpu_rc" -eq 0 ] && [ "$gpu_rc" -eq 0 ]
