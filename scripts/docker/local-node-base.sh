#!/usr/bin/env bash
# Builds a LOCAL stand-in for the Dockerfile's base image `node:20-bookworm-slim`, for machines that
# reach no container registry but do reach a Debian mirror and the npm registry (docs/RECIPES.md), so
# that the root Dockerfile itself can be built and checked there (scripts/check-dockerfile.sh):
#
#   docker build --build-arg NODE_IMAGE=strata-node-base:local -t strata:dockerfile-check .
#
# The stand-in is what the official image is made of: a minimal Debian bookworm (debootstrap
# --variant=minbase, apt lists empty, so the Dockerfile's `apt-get update` is needed as it is there)
# with node 20 at /usr/local/bin/node, npm and npx beside it, node's headers at /usr/local/include/node
# and a user `node` (uid 1000). Node, npm and the headers are this machine's, copied in.
# It is tagged strata-node-base:local, never node:20-bookworm-slim, so the real tag is not shadowed.
#
# Two things differ from the official image, both because of this machine's network, not the Dockerfile:
#  - NODE_EXTRA_CA_CERTS points at a copy of this machine's CA bundle when the machine has one set
#    ($NODE_EXTRA_CA_CERTS or $SSL_CERT_FILE): here HTTPS to the npm registry goes through a proxy whose
#    CA node does not ship, and npm in the build would fail with SELF_SIGNED_CERT_IN_CHAIN.
#  - npm_config_nodedir=/usr/local: nodejs.org is unreachable here, and node-gyp (zstd-napi builds from
#    source when it cannot download a prebuilt binary from GitHub) would otherwise download the headers.
#
#   scripts/docker/local-node-base.sh [TAG]       (default strata-node-base:local; needs root)
# Environment: STRATA_DEBIAN_MIRROR (http://deb.debian.org/debian), STRATA_NODE_BIN (command -v node),
# STRATA_NODE_BASE_REBUILD=1 (rebuild even if the tag exists), STRATA_NODE_BASE_CA (a CA bundle file to
# trust; "none" for none).
set -euo pipefail
tag=${1:-strata-node-base:local}
mirror=${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
node_bin=$(readlink -f "${STRATA_NODE_BIN:-$(command -v node)}")
ca_bundle=${STRATA_NODE_BASE_CA:-${NODE_EXTRA_CA_CERTS:-${SSL_CERT_FILE:-none}}}

log() { echo "local-node-base: $*" >&2; }
die() { log "$*"; exit 1; }

if [ "${STRATA_NODE_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  log "$tag exists (STRATA_NODE_BASE_REBUILD=1 rebuilds it)"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and chroot)"
case "$("$node_bin" --version)" in
  v20.*) ;;
  *) die "$node_bin is not node 20 (set STRATA_NODE_BIN)" ;;
esac
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap from apt"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# node's prefix on this machine: /usr for Debian/NodeSource packages, /usr/local for the tarballs.
prefix=$(dirname "$(dirname "$node_bin")")
npm_dir=$prefix/lib/node_modules/npm
headers=$prefix/include/node
[ -f "$npm_dir/bin/npm-cli.js" ] || die "npm not found at $npm_dir"
[ -f "$headers/node_api.h" ] || die "node's headers not found at $headers"

work=$(mktemp -d /tmp/strata-node-base.XXXXXX)
# debootstrap mounts /proc and /sys in the new root while it installs: never delete through a mount.
cleanup() {
  local m
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  if awk -v w="$work/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    log "left $work in place: something is still mounted under it"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
root=$work/rootfs

log "debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }

# The sources the official bookworm images carry; the lists stay empty, as in those images.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log

# node, npm, npx and the headers, where the official image has them.
install -D -m 755 "$node_bin" "$root/usr/local/bin/node"
mkdir -p "$root/usr/local/lib/node_modules" "$root/usr/local/include"
cp -a "$npm_dir" "$root/usr/local/lib/node_modules/npm"
cp -a "$headers" "$root/usr/local/include/node"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
chroot "$root" /bin/sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'

changes=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change "ENV NODE_VERSION=$("$node_bin" --version | tr -d v)"
  --change 'ENV npm_config_nodedir=/usr/local'
  --change 'LABEL org.opencontainers.image.description="local stand-in for node:20-bookworm-slim (scripts/docker/local-node-base.sh)"'
  --change 'CMD ["node"]'
)
if [ "$ca_bundle" != none ]; then
  [ -f "$ca_bundle" ] || die "CA bundle $ca_bundle not found"
  install -D -m 644 "$ca_bundle" "$root/usr/local/share/strata-build-ca/ca-bundle.crt"
  changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/strata-build-ca/ca-bundle.crt')
  log "trusting this machine's CA bundle $ca_bundle in the stand-in (NODE_EXTRA_CA_CERTS)"
fi

# Does it run? node and npm inside the new root, with its own libraries.
in_root() { env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root chroot "$root" "$@"; }
in_root node -e 'process.exit(0)' || die "node does not run in the bookworm root"
in_root npm --version >/dev/null || die "npm does not run in the bookworm root"

log "docker import -> $tag"
tar -C "$root" --numeric-owner -c . | docker import "${changes[@]}" - "$tag" >/dev/null
log "ok: $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%d MB", $1/1e6}'))"
