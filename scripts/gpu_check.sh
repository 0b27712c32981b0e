#!/usr/bin/env bash
# Run on a lent GPU machine (the device tool), in the repository root, with .gpu-wheels
# carried (scripts/gpu_wheels.sh makes it). Installs tunewire beside the image's own
# PyTorch, runs the real-GPU tests (tests/trainer/test_cuda.py) and the trainer suite, and
# times one worker on cuda:0 against one on the CPU on digits-mlp and mnist-cnn through a
# local server. Everything it prints also goes to $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu-check}"
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
python="${GPU_PYTHON:-python3}"
trials="${TRIALS:-8}"
venv="${GPU_VENV:-}"  # an environment that already has tunewire (a dry run elsewhere)
if [ -z "$venv" ]; then
  venv=/tmp/tunewire-gpu-venv
  "$python" -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install --quiet --no-index --no-deps .gpu-wheels/*.whl
  "$venv/bin/pip" install --quiet --no-index --no-deps --no-build-isolation .
fi
py="$venv/bin/python"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$py" -c "import torch, grpc, botorch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'grpcio', grpc.__version__, 'botorch', botorch.__version__)"

echo "== real-GPU tests"
"$py" -m pytest -q -p no:cacheprovider tests/trainer/test_cuda.py -rs
echo "== trainer suite (simulated CUDA paths included)"
"$py" -m pytest -q -p no:cacheprovider tests/trainer -m "not slow" -x

echo "== one worker, $trials Sobol trials (seed 0): cuda:0 with and without mixed precision; digits-mlp also on cpu"
port=50917
rm -f /tmp/gpu-check.db  # a rerun on the same machine starts from empty studies
"$py" -m tunewire.client.cli serve --host 127.0.0.1 --port $port \
  --storage "sqlite:////tmp/gpu-check.db" > "$out/server.log" 2>&1 &
server=$!
for _ in $(seq 120); do  # until it answers (a cold image imports torch slowly)
  "$py" -m tunewire.client.cli study list --server 127.0.0.1:$port > /dev/null 2>&1 && break
  sleep 1
done
for task in digits-mlp mnist-cnn; do
  "$py" - "$task" "$trials" > "/tmp/$task-sobol.yaml" <<'PY'
import sys, yaml
from tunewire.trainer.tasks import BUILTIN_TASKS
spec = BUILTIN_TASKS[sys.argv[1]].default_spec()
spec.update(algorithm="sobol", seed=0, max_trials=int(sys.argv[2]), early_stopping={"rule": "none"})
print(yaml.safe_dump(spec))
PY
  runs=("cuda:0 --amp" "cuda:0")
  [ "$task" = digits-mlp ] && runs+=("cpu")
  for run in "${runs[@]}"; do
    device=${run%% *}
    extra=""
    [ "$run" != "$device" ] && extra=${run#* }
    study="$task-${device/:/}${extra:+-amp}"
    start=$(date +%s%N)
    # shellcheck disable=SC2086
    "$py" -m tunewire.trainer --server 127.0.0.1:$port --study "$study" --task "$task" \
      --space "/tmp/$task-sobol.yaml" --devices "$device" $extra --progress log \
      > "$out/$study.log" 2>&1
    code=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '%-22s exit %d  %7d ms for %d trials (start-up included)  %s\n' "$study" "$code" \
      "$ms" "$trials" "$(tail -n 2 "$out/$study.log" | tr '\n' ' ' | cut -c1-200)"
  done
done
kill $server
