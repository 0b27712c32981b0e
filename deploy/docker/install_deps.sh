#!/bin/sh
# Installs tunewire's dependencies into /opt/venv from the wheel folder /wheels
# (both Dockerfile targets run it); $1 holds pip's index options (the Dockerfile passes
# PIP_INDEX_OPTIONS, default --no-index).
# tunewire itself goes to /opt/tunewire, which a .pth file puts on the venv's path.
set -eu
python3 -m venv /opt/venv
# shellcheck disable=SC2086  # the index options are several words on purpose
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check $1 \
  --find-links /wheels -r /wheels/requirements.txt -c /wheels/constraints.txt
/opt/venv/bin/pip check
purelib=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo /opt/tunewire > "$purelib/tunewire.pth"
