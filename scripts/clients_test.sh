#!/usr/bin/env bash
# Proves the API from other languages: runs the Node.js and Go client tests (and
# examples) against a real tunewire server with token auth on a free loopback port.
#   bash scripts/clients_test.sh
# Installs what it needs on a bare Debian machine, skipping what is there already: Go,
# protoc and grpc-go from Debian packages (no Go module proxy needed), @grpc/grpc-js and
# @grpc/proto-loader with `npm ci` (node_modules is reused while package-lock.json is
# unchanged). Assumes `bash scripts/install.sh dev` has made .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ ! -x .venv/bin/tunewire ]; then
  echo "no .venv/bin/tunewire: run 'bash scripts/install.sh dev' first" >&2
  exit 1
fi

# -- tools ----------------------------------------------------------------------------
# golang-github-golang-protobuf-1-5-dev is named so that apt does not pick the 1.3
# alternative of grpc's dependency, which predates the APIv2 code protoc-gen-go makes.
debs=(golang-go golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc protobuf-compiler)
command -v node >/dev/null || debs+=(nodejs)
command -v npm >/dev/null || debs+=(npm)
missing=()
for deb in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q "install ok installed" || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

lock_sum=$(sha256sum clients/node/package-lock.json | cut -d' ' -f1)
stamp=clients/node/node_modules/.tunewire-lock.sha256
if [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
  (cd clients/node && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$stamp"
fi

# -- build the Go test before the server starts: the first build takes a while --------
tmp=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

bash scripts/gen_clients.sh
export GOPATH="$root/clients/go/gen:/usr/share/gocode" GO111MODULE=off GOPROXY=off GOFLAGS=""
(cd clients/go && go vet . && go test -c -o "$tmp/go-client.test" . && go build -o "$tmp/go-example" .)
# bench_service's Go load generator uses the same generated code: keep it building.
(cd benchmarks/loadgen && go vet . && go build -o "$tmp/loadgen" .)

# -- server -----------------------------------------------------------------------------
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
.venv/bin/tunewire serve --host 127.0.0.1 --port 0 --storage "sqlite:///$tmp/clients.db" \
  --token "$token" >"$tmp/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 120); do
  port=$(sed -n 's/^tunewire server listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/server.log")
  [ -n "$port" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  sleep 0.5
done
if [ -z "$port" ]; then
  echo "the tunewire server did not start; its log:" >&2
  cat "$tmp/server.log" >&2
  exit 1
fi
export TUNEWIRE_TARGET="127.0.0.1:$port" TUNEWIRE_TOKEN="$token"
echo "tunewire server on $TUNEWIRE_TARGET (token auth)"

# -- tests: run both languages even when one fails ---------------------------------------
status=0
echo "== Node.js: node --test"
(cd clients/node && node --test test/) || status=1
echo "== Node.js: example"
(cd clients/node && node example.js --study toy-node --workers 3) || status=1
echo "== Go: go test"
(cd clients/go && "$tmp/go-client.test" -test.count=1 -test.v) || status=1
echo "== Go: example"
"$tmp/go-example" -study toy-go -workers 3 || status=1

if [ $status -ne 0 ]; then
  echo "client tests FAILED; the server's log:" >&2
  tail -n 50 "$tmp/server.log" >&2
fi
exit $status
