#!/usr/bin/env bash
# `npm test` with four CPU-bound node processes beside it: about the load (8 on two cores) at
# which wall-clock bounds used to break. Exits with the suite's status; the load always stops.
#   bash scripts/test-loaded.sh [jest args…]     (npm run test:loaded)
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
npm test -- "$@"
status=$?
echo "test:loaded: npm test exited $status"
exit "$status"
