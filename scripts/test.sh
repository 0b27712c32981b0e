#!/usr/bin/env bash
# The test command (CI's .ci/run runs it, then buf breaking, the Go and Node.js clients and
# the container test): installs dev tools, checks the API contract and lint, then runs the
# whole test suite, slow end-to-end tests included.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,lightning,huggingface
# The dashboard's browser tests drive Debian's Chromium through Playwright (never
# `playwright install`, which downloads a browser). Where it is missing and apt can run
# (root), install it; elsewhere those tests skip with the reason, and fail under CI.
if [ ! -x "${TUNEWIRE_CHROMIUM:-/usr/bin/chromium}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "install: Chromium for the dashboard's browser tests (apt-get)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
. .venv/bin/activate
bash protos/generate.sh --check
(cd protos && buf lint)
ruff check server client trainer integrations dashboard tests benchmarks
bash scripts/typecheck.sh
python -m pytest "$@"
