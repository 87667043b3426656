#!/usr/bin/env bash
# `npm test` with four CPU-bound node processes beside it: about the load (8 on two cores) at
# which wall-clock bounds used to break. Exits with the suite's status; the load always stops.
#   bash scripts/test-loaded.sh [jest args…]                 (npm run test:loaded)
#   LOADED_NODE=24 bash scripts/test-loaded.sh [jest args…]  (npm run test:loaded:node24: the
#   suite on Node 24 through scripts/with-node24.sh, after the typecheck, lint and build)
set -uo pipefail
cd "$(dirname "$0")/.."
HOGS="${LOADED_HOGS:-4}"
# Each spins until its parent is gone or an hour has passed, even if this script is killed.
HOG='const parent = process.ppid, end = Date.now() + 3600e3;
for (let i = 1; ; i++) if (i % 1e7 === 0 && (process.ppid !== parent || Date.now() > end)) break;'
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait "${pids[@]}" 2>/dev/null
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for _ in $(seq "$HOGS"); do
  node -e "$HOG" &
  pids+=("$!")
done
echo "test:loaded: $HOGS CPU-bound processes (${pids[*]}) beside npm test"
if [ "${LOADED_NODE:-}" = 24 ]; then
  npm run typecheck && npm run lint && npm run build && npm run test:node24 -- "$@"
else
  npm test -- "$@"
fi
status=$?
echo "test:loaded: the suite exited $status"
exit "$status"
