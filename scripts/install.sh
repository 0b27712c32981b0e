#!/usr/bin/env bash
# Creates .venv (if missing) and installs tunewire with its dependencies into it.
#   bash scripts/install.sh            # runtime only
#   bash scripts/install.sh dev        # plus test and lint tools
#   bash scripts/install.sh dev,bench  # plus the benchmark peers (Optuna, Ax)
# PyTorch comes first as the CPU build (2.13.0) so that nothing pulls a CUDA build;
# on a GPU machine install the CUDA build of torch you want before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
. .venv/bin/activate
pip install --quiet --disable-pip-version-check --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  pip install --quiet --disable-pip-version-check "torch==2.13.0"
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
pip install --quiet --disable-pip-version-check -e "$spec"
