#!/usr/bin/env bash
# Type-checks tunewire as it is installed: server/, client/, trainer/ and protos/ are the
# packages tunewire.server, .client, .trainer and .v1, a mapping mypy cannot see through
# an editable install. So mypy runs over a tree of links that has that layout
# (build/typecheck), where every tunewire.* import resolves. A probe with a deliberately
# wrong call into tunewire.server then proves they do: it must fail.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tree=build/typecheck
mkdir -p "$tree/tunewire"
for pkg in server client trainer integrations dashboard; do
  if [ -d "$root/$pkg" ]; then ln -sfn "$root/$pkg" "$tree/tunewire/$pkg"; fi
done
ln -sfn "$root/protos/tunewire/v1" "$tree/tunewire/v1"
for top in benchmarks tests; do ln -sfn "$root/$top" "$tree/$top"; done
cd "$tree"
mypy --config-file "$root/pyproject.toml" -p tunewire -p benchmarks

probe=probe_wrong_call.py
cat > "$probe" <<'PY'
from tunewire.server.domain.lifecycle import share_out

share_out(wants="not a list of counts", room="nor a number")
PY
if out=$(mypy --config-file "$root/pyproject.toml" "$probe" 2>&1); then
  echo "typecheck: mypy accepted a wrong call into tunewire.server: it does not resolve" \
    "tunewire.* imports, so it is not checking them" >&2
  exit 1
fi
grep -q 'Argument "wants" to "share_out" has incompatible type' <<<"$out" || {
  echo "typecheck: the probe failed for another reason than the wrong call:" >&2
  echo "$out" >&2
  exit 1
}
rm -f "$probe"
echo "typecheck: mypy resolves tunewire.* imports (the probe's wrong call was caught)"
