#!/usr/bin/env bash
# Builds the wheels of tunewire's runtime dependencies into a folder of the Docker build
# context, for `pip install --no-index --find-links` in the Dockerfile (tunewire itself is
# built from source there). Versions are pinned to the ones installed in the venv the tests
# ran with, so the image runs what was tested; torch is whatever that venv has (here the
# local CPU build, never a CUDA one). Skips the work when the pins are unchanged.
#   bash deploy/docker/build_wheels.sh [OUT_DIR]     # default .wheels/cp311 (per Python)
# Env: PYTHON (default .venv/bin/python).
# For a CUDA trainer image, build the folder on a machine with the matching Python and the
# CUDA build of torch installed in that venv, and pass it with --build-arg TRAINER_WHEELS=...
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-.venv/bin/python}"
tag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
out="${1:-.wheels/$tag}"
mkdir -p "$out"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" - "$work/requirements.txt" <<'PY'
import sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
# The build backend too: the image builds tunewire from source, offline.
deps += tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]
open(sys.argv[1], "w").write("\n".join(deps) + "\n")
PY
# Pins: what the test venv has (editable installs, i.e. tunewire itself, left out).
"$python" -m pip freeze --exclude-editable --all | grep -v '^tunewire' >"$work/constraints.txt"
stamp=$(cat "$work/requirements.txt" "$work/constraints.txt" | sha256sum | cut -c1-16)
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ]; then
  echo "wheels in $out are up to date ($stamp)"
  exit 0
fi
rm -f "$out"/*.whl "$out/.stamp"
if ! "$python" -m pip wheel --quiet --wheel-dir "$out" \
  -r "$work/requirements.txt" -c "$work/constraints.txt" >"$work/pip.log" 2>&1; then
  cat "$work/pip.log" >&2
  exit 1
fi
# The Dockerfile installs exactly these: the requirement list and the pins beside the wheels.
cp "$work/requirements.txt" "$work/constraints.txt" "$out/"
if ls "$out" | grep -q '^nvidia_'; then
  echo "note: CUDA libraries among the wheels (torch is a CUDA build)" >&2
fi
echo "$stamp" >"$out/.stamp"
echo "$(ls "$out"/*.whl | wc -l) wheels in $out ($(du -sh "$out" | cut -f1))"
