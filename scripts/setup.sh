#!/usr/bin/env bash
# Installs what Strata's tests need on a fresh Debian machine, idempotently: etcd (apt), the Docker
# engine (apt, started in the background if not running), and the npm dependencies (npm ci).
# Quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server etcd-client)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Docker engine in the background (RECIPES.md). Tests that need it skip with a message if it is absent.
if [ "${STRATA_SKIP_DOCKER:-}" != "1" ] && ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd"
  nohup dockerd >/tmp/strata-dockerd.log 2>&1 &
  for _ in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not start"; tail -50 /tmp/strata-dockerd.log; exit 1; }
fi

# npm ci only when the lock file changed since the last install.
stamp=node_modules/.strata-lock-hash
hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  echo "$hash" > "$stamp"
fi
echo "setup: ok (etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'), node $(node --version))"
