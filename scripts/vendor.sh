#!/usr/bin/env bash
# Copy front-end libraries installed from the npm registry into static/vendor/, with their
# version in the file name (STYLE §5). Nothing is loaded from a CDN at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p static/vendor
version() { node -p "require('./node_modules/$1/package.json').version"; }
cp node_modules/htmx.org/dist/htmx.min.js "static/vendor/htmx-$(version htmx.org).min.js"
cp node_modules/chart.js/dist/chart.umd.min.js "static/vendor/chart-$(version chart.js).umd.min.js"
# The source maps are not shipped: drop the comments naming them, or collectstatic's manifest
# storage fails on the missing .map file.
sed -i '/^\/\/# sourceMappingURL=/d' static/vendor/*.js
