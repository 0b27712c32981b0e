#!/usr/bin/env bash
# The container test (tests/deploy) with a real Docker engine, on a machine that may have
# none (CI runs this): installs docker.io and debootstrap if missing, starts dockerd if no
# engine answers (and stops it again at the end), makes the registry-free base image
# tunewire-base:bookworm once (kept between runs), then runs the test, which builds the
# dependency wheels (cached in .wheels/) and both image targets (cached by Docker), and
# checks deploy/ (Kubernetes manifests against the API schemas, docker-compose.yml).
# Needs root. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "installing docker.io and debootstrap"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi

dockerd_pid=""
stop_dockerd() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
}
if ! docker info >/dev/null 2>&1; then
  log=$(mktemp /tmp/tunewire-dockerd.XXXXXX.log)
  echo "starting dockerd (log $log)"
  dockerd >"$log" 2>&1 </dev/null &
  dockerd_pid=$!
  trap stop_dockerd EXIT
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 "$log" >&2; exit 1; }
fi

bash deploy/docker/make_base_image.sh
bash scripts/install.sh dev
. .venv/bin/activate
# The offline schema checker of deploy/k8s (Kubernetes' OpenAPI schemas ship inside it).
python -c "import kubernetes_validate" 2>/dev/null \
  || pip install --quiet --disable-pip-version-check kubernetes-validate
TUNEWIRE_DOCKER_TESTS=1 python -m pytest tests/deploy -rP "$@"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
  | grep -E '^tunewire-(base|server|trainer):' || true
echo "container test took $(($(date +%s) - started)) s"
