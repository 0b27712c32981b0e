#!/usr/bin/env bash
# Generates the Python code of the API from the .proto files, next to them, so that
# `import tunewire.v1.study_pb2` resolves. The one command that makes generated code:
#   bash protos/generate.sh          # regenerate
#   bash protos/generate.sh --check  # fail if the committed code drifted from the protos
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here"
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
python -m grpc_tools.protoc -I "$here" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  "$here"/tunewire/v1/*.proto
# The descriptors with their source comments, which server reflection serves (so that
# `grpcurl describe` shows the documentation); the generated Python code strips them.
python -m grpc_tools.protoc -I "$here" --include_source_info --include_imports \
  --descriptor_set_out="$out/tunewire/v1/descriptors.binpb" "$here"/tunewire/v1/*.proto
if [ "${1:-}" = "--check" ]; then
  status=0
  for f in "$out"/tunewire/v1/*_pb2*.py* "$out"/tunewire/v1/descriptors.binpb; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$here/tunewire/v1/$name"; then
      echo "generated code drifted from the protos: protos/tunewire/v1/$name (run: bash protos/generate.sh)" >&2
      status=1
    fi
  done
  exit $status
fi
