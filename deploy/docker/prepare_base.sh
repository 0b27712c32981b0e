#!/bin/sh
# Prepares a base image for tunewire (both Dockerfile targets run it): Python with venv
# (installed from the distribution when the base has none, e.g. a CUDA runtime image),
# the unprivileged user `tunewire` (uid 10001) and the /data folder it owns.
set -eu
if ! { command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1; }; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    python3 python3-venv ca-certificates
  rm -rf /var/lib/apt/lists/*
fi
useradd --uid 10001 --user-group --create-home --home-dir /home/tunewire \
  --shell /usr/sbin/nologin tunewire
mkdir -p /data
chown tunewire:tunewire /data
