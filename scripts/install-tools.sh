#!/usr/bin/env bash
# Installs the Debian packages the test suite uses beside npm's: prometheus (prometheus, promtool)
# wrk (the benchmark's and the soak's load generator) and postgresql (the database tests start a
# throwaway cluster with its initdb and pg_ctl, which Debian keeps off PATH).
# Without them the tests that need them are skipped with a message, except under CI=true.
set -euo pipefail

packages=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || packages+=(postgresql)

if [ ${#packages[@]} -eq 0 ]; then
  echo "install-tools: Debian packages already installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: cannot install ${packages[*]} here (needs root and apt-get); tests that need them will be skipped" >&2
  [ "${CI:-}" = "true" ] && exit 1
  exit 0
fi
echo "install-tools: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
timeout 600 apt-get update -qq
timeout 900 apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
