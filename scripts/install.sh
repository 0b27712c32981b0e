#!/usr/bin/env bash
# Creates .venv (if missing) and installs tunewire with its dependencies into it.
#   bash scripts/install.sh            # runtime only
#   bash scripts/install.sh dev        # plus test and lint tools
#   bash scripts/install.sh dev,bench  # plus the benchmark peers (Optuna, Ax)
# PyTorch comes first as the CPU build (2.13.0) so that nothing pulls a CUDA build;
# on a GPU machine install the CUDA build of torch you want before running this.
# Each step says what it does first: pip runs quietly, and a first install takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
step() { echo "install: $*" >&2; }
if [ ! -x .venv/bin/python ]; then
  step "creating the virtualenv .venv with $python"
  "$python" -m venv .venv
fi
. .venv/bin/activate
step "updating pip in .venv"
pip install --quiet --disable-pip-version-check --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  step "installing PyTorch 2.13.0, CPU build (a large download: the longest step)"
  pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
step "installing tunewire${extras:+ with extras $extras} and its dependencies (gRPC, SQLAlchemy, BoTorch, scikit-learn...)"
pip install --quiet --disable-pip-version-check -e "$spec"
step "done: .venv/bin/tunewire (\`. .venv/bin/activate\` puts \`tunewire\` on the PATH of a shell)"
