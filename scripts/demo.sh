#!/usr/bin/env bash
# The main job for a newcomer: installs tunewire, then starts a local server (SQLite) and
# two trainer workers that tune an MLP on scikit-learn's bundled digits, and prints the
# best trial. Extra arguments go to `tunewire demo` (see `tunewire demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/tunewire demo "$@"
