#!/usr/bin/env bash
# Installs the real engines the test suite starts (PostgreSQL, Prometheus, Chromium) from Debian's
# packages when they are missing. Called by `make test` and .ci/run; a no-op when all are present.
# The tests never skip a missing engine under CI=true: they fail.
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "hermetry tests need: ${need[*]} (Debian packages). Install them as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "installing engines for the tests: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
