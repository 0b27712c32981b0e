#!/usr/bin/env bash
# Fails when protos/ (working tree) breaks clients built against a previous commit:
# renumbered or removed fields, changed types, renamed RPCs... (buf's FILE rules, set in
# protos/buf.yaml).
#   bash scripts/buf_breaking.sh           # against HEAD~1, the previous commit of main
#   bash scripts/buf_breaking.sh origin/main   # e.g. a branch against main
# Passes only when buf finds no break, or when the baseline has no protos/ at all (the
# repository's first commit, or the API did not exist yet); both cases say so.
set -euo pipefail
cd "$(dirname "$0")/.."
base_ref="${1:-HEAD~1}"
buf=.venv/bin/buf
[ -x "$buf" ] || buf=buf

if ! git rev-parse --verify --quiet "$base_ref^{commit}" >/dev/null; then
  if [ "$base_ref" = "HEAD~1" ] && [ "$(git rev-parse --is-shallow-repository)" = "true" ]; then
    # A shallow CI checkout: fetch the parent rather than skip the check.
    git fetch --quiet --deepen=1 || {
      echo "buf breaking: shallow clone and cannot fetch HEAD~1; clone with depth >= 2" >&2
      exit 1
    }
  elif [ "$base_ref" = "HEAD~1" ] && [ -z "$(git rev-list --parents -n1 HEAD | cut -s -d' ' -f2)" ]; then
    echo "buf breaking: HEAD is the first commit; nothing to compare against"
    exit 0
  else
    echo "buf breaking: no commit $base_ref" >&2
    exit 1
  fi
fi
base=$(git rev-parse --verify "$base_ref^{commit}")

if ! git cat-file -e "$base:protos" 2>/dev/null; then
  echo "buf breaking: $base_ref ($base) has no protos/; nothing to compare against"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git archive "$base" protos | tar -x -C "$tmp"
echo "buf breaking: protos/ against $base_ref ($(git log -1 --format='%h %s' "$base"))"
"$buf" breaking protos --against "$tmp/protos"
echo "buf breaking: no breaking change"
