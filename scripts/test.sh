#!/usr/bin/env bash
# The test command (CI runs exactly this): installs dev tools, checks the API contract
# and lint, then runs the whole test suite, slow end-to-end tests included.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"` for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev,lightning,huggingface
. .venv/bin/activate
bash protos/generate.sh --check
(cd protos && buf lint)
ruff check server client trainer integrations tests benchmarks
bash scripts/typecheck.sh
python -m pytest "$@"
