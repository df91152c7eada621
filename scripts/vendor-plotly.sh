#!/usr/bin/env bash
# Refresh labeler/app/assets/plotly-gl2d.min.js: plotly.js's own prebuilt "gl2d" partial bundle
# (core + scatter + scattergl + splom + parcoords, MIT, dist/plotly-gl2d.min.js of the plotly.js npm
# package). The dashboard draws only scattergl traces and layout images; Dash's dcc.Graph uses a
# window.Plotly defined by an assets/ script instead of loading the full 4.8 MB plotly.min.js, and the
# 1.5 MB bundle is compiled ~1 s sooner by a browser that has not cached it (benchmarks/bench_dashboard.py).
# Usage: bash scripts/vendor-plotly.sh [VERSION]   (default: the plotly.js version plotly.py bundles)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${1:-$(python -c 'from plotly.offline import get_plotlyjs_version; print(get_plotlyjs_version())')}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "plotly.js@${VERSION}" >/dev/null && tar -xzf plotly.js-*.tgz package/dist/plotly-gl2d.min.js)
cp "$TMP/package/dist/plotly-gl2d.min.js" labeler/app/assets/plotly-gl2d.min.js
head -2 labeler/app/assets/plotly-gl2d.min.js | tail -1
