#!/usr/bin/env bash
# Builds the image from the root Dockerfile and checks it behaves like the locally assembled one
# (test/dockerfile.test.ts: the same checks as test/image.test.ts, and the same files as strata:dev).
# Opt-in (`npm run check:dockerfile`): it takes minutes and needs the Debian mirror and the npm
# registry from inside the build containers. Decision 0055.
#
#   scripts/check-dockerfile.sh               build, test, then remove what it built
#   scripts/check-dockerfile.sh --build-only  build (test/dockerfile.test.ts calls this)
#   scripts/check-dockerfile.sh --clean       remove the checked image and its build stage's images
#
# The build stage's base (NODE_IMAGE build argument): STRATA_NODE_IMAGE, by default
# strata-node-base:local, the stand-in for node:20-bookworm-slim that scripts/docker/local-node-base.sh
# makes when it is missing (no registry is reachable on the machines this project is built on). Where
# a registry is reachable: STRATA_NODE_IMAGE=node:20-bookworm-slim.
# Environment: STRATA_DOCKERFILE_IMAGE (strata:dockerfile-check), STRATA_DOCKERFILE_KEEP=1 (keep the
# image), STRATA_DOCKERFILE_NETWORK (docker build --network, e.g. host, when the build containers
# cannot reach the mirror on the default bridge). The context is the working tree (with .dockerignore).
#
# Holds /tmp/strata-heavy.lock for the whole run (do not wrap it in another flock on that file).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-all}
base=${STRATA_NODE_IMAGE:-strata-node-base:local}
image=${STRATA_DOCKERFILE_IMAGE:-strata:dockerfile-check}

log() { echo "check-dockerfile: $*" >&2; }
die() { log "$*"; exit 1; }
size() { docker image inspect -f '{{.Size}}' "$1" 2>/dev/null | awk '{printf "%d MB", $1/1e6}'; }

if [ "${STRATA_HEAVY_LOCK_HELD:-0}" != 1 ]; then
  exec 8>/tmp/strata-heavy.lock
  log "waiting for /tmp/strata-heavy.lock"
  flock 8
  export STRATA_HEAVY_LOCK_HELD=1
fi

if ! docker info >/dev/null 2>&1; then
  log "no Docker engine answers; running scripts/setup.sh"
  bash scripts/setup.sh >&2
  docker info >/dev/null 2>&1 || die "still no Docker engine after scripts/setup.sh"
fi

# The checked image, earlier ones it replaced (untagged, labelled by build()), and the untagged images
# its build stage left (they descend from the base image; the legacy builder keeps them as cache).
# Others' images are left alone.
clean() {
  docker rmi "$image" >/dev/null 2>&1 && log "removed $image"
  local base_id id
  for id in $(docker images -q --no-trunc --filter dangling=true --filter label=strata.dockerfile-check=1); do
    docker rmi "$id" >/dev/null 2>&1 && log "removed an earlier checked image ${id:7:12}"
  done
  base_id=$(docker image inspect -f '{{.Id}}' "$base" 2>/dev/null) || return 0
  for id in $(docker images -q --no-trunc --filter dangling=true); do
    if docker history -q --no-trunc "$id" 2>/dev/null | grep -qx "$base_id"; then
      docker rmi "$id" >/dev/null 2>&1 && log "removed build-stage image ${id:7:12}"
    fi
  done
  return 0
}

build() {
  if [ "$base" = strata-node-base:local ]; then
    bash scripts/docker/local-node-base.sh "$base"
  fi
  docker image inspect "$base" >/dev/null 2>&1 || die "base image $base is not here (docker pull $base)"
  local args=(build --build-arg "NODE_IMAGE=$base" --label strata.dockerfile-check=1 -t "$image") logfile start
  [ -n "${STRATA_DOCKERFILE_NETWORK:-}" ] && args+=(--network "$STRATA_DOCKERFILE_NETWORK")
  logfile=$(mktemp /tmp/strata-dockerfile-build.XXXXXX.log)
  start=$(date +%s)
  log "DOCKER_BUILDKIT=0 docker ${args[*]} (log: $logfile)"
  DOCKER_BUILDKIT=0 docker "${args[@]}" . >"$logfile" 2>&1 ||
    { tail -40 "$logfile" >&2; die "docker build failed (log: $logfile)"; }
  rm -f "$logfile"
  log "built $image in $(($(date +%s) - start)) s: $(size "$image") (base $base: $(size "$base"))"
}

case "$mode" in
  --clean) clean ;;
  --build-only) build ;;
  all)
    [ "${STRATA_DOCKERFILE_KEEP:-0}" = 1 ] || trap clean EXIT
    build
    STRATA_DOCKERFILE_CHECK=1 STRATA_DOCKERFILE_PREBUILT=1 STRATA_DOCKERFILE_IMAGE="$image" \
      npx vitest run test/dockerfile.test.ts
    ;;
  *) die "usage: check-dockerfile.sh [--build-only|--clean]" ;;
esac
