#!/bin/sh
# Strips what a runtime venv never uses (the Dockerfile's *-runtime stages): pip and
# setuptools, the largest test suites, torch's C++ headers and test binaries. Then imports
# every dependency tunewire uses, so a removal that breaks one fails the build, not a run.
#   sh slim_venv.sh /opt/venv
set -eu
venv="$1"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$venv/bin/python" -m pip uninstall --yes --quiet setuptools pip
# Only test suites nothing imports (some packages, e.g. pyre_extensions, import their own).
rm -rf "$site/torch/test" "$site/torch/include" "$site/pandas/tests" \
  "$site"/torch/bin/*Test "$site"/torch/bin/test_* "$site"/torch/bin/protoc*
"$venv/bin/python" -c "
import alembic, botorch, gpytorch, grpc, grpc_health, grpc_reflection, mlxtend, numpy
import pandas, prometheus_client, psycopg, scipy, sklearn, sqlalchemy, torch, yaml
import botorch.acquisition, botorch.models, botorch.optim
import starlette, uvicorn
"
du -sh "$venv"
