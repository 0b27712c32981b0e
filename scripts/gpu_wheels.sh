#!/usr/bin/env bash
# Run here, before a GPU check: downloads into .gpu-wheels/ the wheels that the lent GPU
# machine's image lacks (it has torch, botorch, numpy, scikit-learn... but cannot reach a
# package registry), for its Python (3.12 by default), at the versions installed in .venv.
# Then: the device tool's `run` with carry [".gpu-wheels"] and `bash scripts/gpu_check.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
pyver="${GPU_PYTHON_VERSION:-3.12}"
abi="cp${pyver/./}"
packages="grpcio grpcio-health-checking grpcio-reflection protobuf sqlalchemy alembic mako
  markupsafe psycopg psycopg-binary mlxtend typing_extensions"
pins=$(.venv/bin/python - $packages <<'PY'
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
PY
)
rm -rf .gpu-wheels && mkdir -p .gpu-wheels
# shellcheck disable=SC2086
.venv/bin/pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version "$pyver" --implementation cp --abi "$abi" \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_17_x86_64 --platform any -d .gpu-wheels $pins
mkdir -p .git/info
grep -qx '/.gpu-wheels/' .git/info/exclude 2>/dev/null || echo '/.gpu-wheels/' >> .git/info/exclude
du -sh .gpu-wheels
