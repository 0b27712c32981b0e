#!/usr/bin/env bash
# Generates client code for languages that need it from protos/ (the one command; never
# edit its output). Python has its own: protos/generate.sh. Node.js needs none: it loads
# the .proto files at run time with @grpc/proto-loader (clients/node/tunewire.js).
#   bash scripts/gen_clients.sh   # Go -> clients/go/gen/src/tunewire/v1 (git-ignored)
# Needs protoc, protoc-gen-go (>= 1.20, APIv2) and protoc-gen-go-grpc on PATH; on Debian:
#   apt-get install protobuf-compiler protoc-gen-go protoc-gen-go-grpc
# The Go import path is set here with M options, so the .proto files carry no go_package.
set -euo pipefail
cd "$(dirname "$0")/.."
out=clients/go/gen/src
go_import="tunewire/v1;tunewirev1"
maps=()
for proto in protos/tunewire/v1/*.proto; do
  maps+=("M${proto#protos/}=$go_import")
done
go_opts=$(IFS=,; echo "${maps[*]}")
rm -rf "$out/tunewire"
mkdir -p "$out"
protoc -I protos \
  --go_out="$out" --go_opt="$go_opts" \
  --go-grpc_out="$out" --go-grpc_opt="$go_opts" \
  protos/tunewire/v1/*.proto
echo "generated Go code in $out/tunewire/v1:" $(cd "$out/tunewire/v1" && ls)
