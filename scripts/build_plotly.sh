#!/usr/bin/env bash
# Builds dashboard/static/plotly.min.js: plotly.js with only the trace types the
# dashboard draws (scatter, scattergl, bar, parcoords, splom), a third of the full
# bundle's size, so a browser parses and starts it sooner. Installing or running
# tunewire never needs this script or npm: its output is committed.
#
#   bash scripts/build_plotly.sh          # needs node and npm (the npm registry)
#
# It uses plotly.js's own sources and build settings (its esbuild-config.js, inlined
# because the npm package leaves out the tasks/ folder that file reads).
set -euo pipefail

PLOTLY_VERSION=4.1.1
TRACES=(bar scattergl splom parcoords)  # scatter is in plotly.js's core
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/dashboard/static/plotly.min.js"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
echo "build_plotly: plotly.js $PLOTLY_VERSION sources from npm" >&2
npm pack --silent "plotly.js@$PLOTLY_VERSION" >/dev/null
tar xzf "plotly.js-$PLOTLY_VERSION.tgz"
cd package
npm install --silent --omit=dev --ignore-scripts --no-audit --no-fund
npm install --silent --no-save --ignore-scripts --no-audit --no-fund \
  esbuild@0.28.1 esbuild-plugin-environment@0.5.0 esbuild-plugin-glsl@1.4.2 \
  esbuild-plugin-inline-css@0.0.1 stream-browserify@3.0.0

{
  echo "'use strict';"
  echo "var Plotly = require('./core');"
  echo "Plotly.register(["
  for trace in "${TRACES[@]}"; do echo "  require('./$trace'),"; done
  echo "]);"
  echo "module.exports = Plotly;"
} >lib/index-tunewire.js

cat >build-tunewire.js <<'EOF'
const esbuild = require('esbuild');
const { environmentPlugin } = require('esbuild-plugin-environment');
const { glsl } = require('esbuild-plugin-glsl');
const InlineCSSPlugin = require('esbuild-plugin-inline-css');
esbuild.build({
  entryPoints: ['./lib/index-tunewire.js'],
  outfile: './dist/plotly-tunewire.min.js',
  format: 'iife',
  globalName: 'Plotly',
  bundle: true,
  minify: true,
  sourcemap: false,
  plugins: [InlineCSSPlugin(), glsl({ minify: true }), environmentPlugin({ NODE_DEBUG: false })],
  alias: { regl: '@plotly/regl', stream: 'stream-browserify' },
  define: { global: 'window', 'define.amd': 'false' },
  target: 'es2016',
  logLevel: 'warning',
}).catch(() => process.exit(1));
EOF
node build-tunewire.js

{
  echo "/**"
  echo "* plotly.js v$PLOTLY_VERSION (traces: scatter ${TRACES[*]}), built by scripts/build_plotly.sh"
  echo "* Copyright 2012-2026, Plotly, Inc."
  echo "* All rights reserved."
  echo "* Licensed under the MIT license"
  echo "*/"
  cat dist/plotly-tunewire.min.js
} >"$out"
echo "build_plotly: wrote $out ($(wc -c <"$out") bytes)" >&2
