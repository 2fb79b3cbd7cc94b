#!/usr/bin/env bash
# Builds the Strata image (default tag strata:dev) and an etcd image (strata-etcd:dev) from this
# machine's files, without pulling anything: no registry is reachable here (docs/RECIPES.md). Each is a
# FROM scratch image whose root filesystem this script assembles:
#   strata:      /usr/bin/node and the libraries ldd lists for it, tini (static) as PID 1, the built app
#                under /app (packages/*/dist and package.json, protos/, production node_modules), a
#                non-root user (uid 10001). ENTRYPOINT: tini -- node --initial-old-space-size=256 /app/packages/cli/dist/bin.js, so
#                `docker run strata:dev broker --help` runs `strata broker --help`.
#   strata-etcd: /usr/bin/etcd and etcdctl (static binaries) at /usr/local/bin, as the etcd images do.
# Where a registry is reachable, the Dockerfile at the repository root builds the same strata image.
#
# Idempotent and quick when nothing changed: builds the app only if a dist/ is missing, installs the
# production node_modules once per package-lock.json (cached), and docker's layer cache skips an
# unchanged root filesystem.
#
# Environment: STRATA_IMAGE (strata:dev), STRATA_ETCD_IMAGE (strata-etcd:dev), STRATA_IMAGE_CACHE
# (~/.cache/strata-image), STRATA_IMAGE_REBUILD=1 (rebuild the app first), STRATA_IMAGE_SKIP_ETCD=1,
# STRATA_IMAGE_ONLY_ETCD=1 (only strata-etcd, which needs no app build).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${STRATA_IMAGE:-strata:dev}
ETCD_IMAGE=${STRATA_ETCD_IMAGE:-strata-etcd:dev}
CACHE=${STRATA_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-image}
APP_UID=10001
NODE_BIN=${STRATA_NODE_BIN:-$(command -v node)}

log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

# One build at a time per cache (tests may call this script in parallel).
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# --- the Docker engine: start it through the project's setup script (never a second dockerd) ---
if ! docker info >/dev/null 2>&1; then
  log "no Docker engine answers; running scripts/setup.sh"
  bash scripts/setup.sh >&2
  docker info >/dev/null 2>&1 || die "still no Docker engine after scripts/setup.sh"
fi

# Builds IMAGE from the context directory CTX unless the image already holds exactly these files (a
# content hash kept as a label): sending ~200 MB of context costs seconds even when nothing changed.
build_if_changed() {
  local image=$1 ctx=$2 hash
  hash=$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-32)
  if [ "$(docker image inspect -f '{{index .Config.Labels "strata.context-hash"}}' "$image" 2>/dev/null)" = "$hash" ]; then
    log "$image is up to date"
    return 0
  fi
  log "docker build -t $image"
  DOCKER_BUILDKIT=0 docker build -q --label "strata.context-hash=$hash" -t "$image" "$ctx" >/dev/null 2>"$CACHE/docker-build.log" ||
    { cat "$CACHE/docker-build.log" >&2; die "docker build of $image failed"; }
}

build_strata_image() {
  # --- tini, a real init for PID 1: forwards signals to node and reaps zombies ---
  TINI=$(command -v tini-static || true)
  if [ -z "$TINI" ]; then
    log "installing tini (static) from apt"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends tini >/dev/null
    TINI=$(command -v tini-static) || die "tini-static not found after installing tini"
  fi

  # --- the built app ---
  need_build=${STRATA_IMAGE_REBUILD:-0}
  for pkg in packages/*/; do
    [ -d "${pkg}dist" ] || need_build=1
  done
  [ -f packages/cli/dist/bin.js ] || need_build=1
  if [ "$need_build" = 1 ]; then
    log "building the app (npm run build)"
    flock /tmp/strata-build.lock npm run build --silent >&2
  fi
  [ -f packages/cli/dist/bin.js ] || die "packages/cli/dist/bin.js is missing after the build"

  # --- production node_modules, once per lock file ---
  lock_hash=$(cat package-lock.json package.json packages/*/package.json | sha256sum | cut -c1-16)
  modules="$CACHE/modules-$lock_hash"
  if [ ! -d "$modules" ]; then
    log "installing production node_modules (once per package-lock.json)"
    stage=$(mktemp -d "$CACHE/stage.XXXXXX")
    chmod 755 "$stage"
    cp package.json package-lock.json "$stage/"
    for pkg in packages/*/; do
      mkdir -p "$stage/$pkg"
      cp "${pkg}package.json" "$stage/$pkg"
    done
    (cd "$stage" && npm ci --omit=dev --no-audit --no-fund --prefer-offline --loglevel=error >&2)
    # Keep only node_modules trees (the root one and any a workspace needs of its own).
    find "$stage" -name package.json -not -path '*/node_modules/*' -delete
    rm -f "$stage/package-lock.json"
    mv "$stage" "$modules"
    # Older caches are of no further use.
    find "$CACHE" -maxdepth 1 -name 'modules-*' -not -name "modules-$lock_hash" -exec rm -rf {} +
  fi

  # --- the root filesystem (the same files the Dockerfile's runtime stage holds) ---
  ctx="$CACHE/context"
  rootfs="$ctx/rootfs"
  STRATA_TINI_BIN=$TINI STRATA_NODE_BIN=$NODE_BIN STRATA_APP_UID=$APP_UID bash scripts/docker/assemble-rootfs.sh "$rootfs" "$modules"

  cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV NODE_ENV=production
WORKDIR /app
USER $APP_UID:$APP_UID
LABEL org.opencontainers.image.title="strata" org.opencontainers.image.source="scripts/build-image.sh"
ENTRYPOINT ["/sbin/tini", "--", "/usr/bin/node", "--initial-old-space-size=256", "/app/packages/cli/dist/bin.js"]
CMD ["--help"]
EOF
  build_if_changed "$IMAGE" "$ctx"
}

if [ "${STRATA_IMAGE_ONLY_ETCD:-0}" != 1 ]; then
  build_strata_image
fi

# --- the etcd image ---
if [ "${STRATA_IMAGE_SKIP_ETCD:-0}" != 1 ]; then
  ectx="$CACHE/etcd-context"
  rm -rf "$ectx"
  mkdir -p "$ectx/rootfs/usr/local/bin" "$ectx/rootfs/var/lib/etcd" "$ectx/rootfs/tmp" "$ectx/rootfs/etc"
  chmod 1777 "$ectx/rootfs/tmp"
  for bin in etcd etcdctl; do
    src=$(command -v "$bin") || die "$bin not found (scripts/setup.sh installs etcd)"
    cp "$src" "$ectx/rootfs/usr/local/bin/$bin"
    # Both are static binaries in Debian; copy any library a dynamic build would need.
    while read -r lib; do
      [ -n "$lib" ] && cp -L --parents "$lib" "$ectx/rootfs/"
    done < <(ldd "$src" 2>/dev/null | grep -oE '/[^ ]+' | sort -u || true)
  done
  printf 'root:x:0:0:root:/root:/sbin/nologin\netcd:x:%s:%s:etcd:/var/lib/etcd:/sbin/nologin\n' "$APP_UID" "$APP_UID" >"$ectx/rootfs/etc/passwd"
  printf 'root:x:0:\netcd:x:%s:\n' "$APP_UID" >"$ectx/rootfs/etc/group"
  chmod -R a+rX "$ectx/rootfs"
  cat >"$ectx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
COPY --chown=$APP_UID:$APP_UID rootfs/var/lib/etcd /var/lib/etcd
USER $APP_UID:$APP_UID
# No ETCD_* defaults here: etcd 3.4 refuses to start when a variable and a flag name the same setting.
WORKDIR /var/lib/etcd
ENTRYPOINT ["/usr/local/bin/etcd"]
EOF
  build_if_changed "$ETCD_IMAGE" "$ectx"
fi

for image in "$IMAGE" "$ETCD_IMAGE"; do
  docker image inspect "$image" >/dev/null 2>&1 &&
    log "ok: $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
done
