#!/usr/bin/env bash
# Assembles the root filesystem of the Strata image: node and the shared libraries ldd lists for it,
# tini (static) as PID 1, /etc/passwd with the non-root user 10001, and the built app under /app
# (package.json files, packages/*/dist JavaScript, packages/*/bin launchers, protos/, the production
# node_modules given).
# Used by scripts/build-image.sh (local, FROM scratch) and by the Dockerfile's build stage, so that
# both images hold the same files. Run from the repository root, after `npm run build`.
#
#   scripts/docker/assemble-rootfs.sh ROOTFS PROD_NODE_MODULES_DIR
# PROD_NODE_MODULES_DIR holds node_modules/ (and packages/<pkg>/node_modules/ where npm put any) from
# `npm ci --omit=dev`; its files are hard-linked when it is on the same file system.
set -euo pipefail
rootfs=${1:?usage: assemble-rootfs.sh ROOTFS PROD_NODE_MODULES_DIR}
modules=${2:?usage: assemble-rootfs.sh ROOTFS PROD_NODE_MODULES_DIR}
app_uid=${STRATA_APP_UID:-10001}
node_bin=${STRATA_NODE_BIN:-$(command -v node)}
tini_bin=${STRATA_TINI_BIN:-$(command -v tini-static)} || { echo "assemble-rootfs: tini-static not found (apt-get install tini)" >&2; exit 1; }
[ -f packages/cli/dist/bin.js ] || { echo "assemble-rootfs: run npm run build first" >&2; exit 1; }

rm -rf "$rootfs"
mkdir -p "$rootfs"/{app,etc,tmp,sbin,usr/bin,home/strata}
chmod 1777 "$rootfs/tmp"

# node, and exactly the shared libraries that it and the native addons of the production node_modules
# (*.node files, e.g. @node-rs/crc32 needs librt) load, at the same paths.
cp "$node_bin" "$rootfs/usr/bin/node"
while read -r lib; do
  [ -n "$lib" ] && cp -L --parents "$lib" "$rootfs/"
done < <(
  { ldd "$node_bin"; find -L "$modules" -name '*.node' -type f -exec ldd {} \; 2>/dev/null; } |
    grep -oE '=> /[^ ]+|^\s*/[^ ]+' | grep -oE '/[^ ]+' | sort -u
)
cp "$tini_bin" "$rootfs/sbin/tini"

cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
strata:x:$app_uid:$app_uid:strata:/home/strata:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
strata:x:$app_uid:
EOF
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"

# The app: compiled JavaScript only (no sources, declarations or build info), protos, node_modules.
cp -al "$modules/." "$rootfs/app/" 2>/dev/null || cp -a "$modules/." "$rootfs/app/"
cp package.json "$rootfs/app/"
cp -r protos "$rootfs/app/protos"
for pkg in packages/*/; do
  mkdir -p "$rootfs/app/$pkg"
  cp "${pkg}package.json" "$rootfs/app/$pkg"
  # A committed bin launcher (packages/cli/bin/strata.js): node_modules/.bin/strata links to it.
  if [ -d "${pkg}bin" ]; then cp -r "${pkg}bin" "$rootfs/app/$pkg"; fi
  # Only files compiled from a source that still exists: a dist/ left by an earlier build may hold
  # outputs of deleted sources, which tsc never removes.
  (cd "$pkg" && find dist -type f -name '*.js' -print0 | while IFS= read -r -d '' js; do
    rel="${js#dist/}"
    if [ -f "src/${rel%.js}.ts" ]; then printf '%s\0' "$js"; fi
  done | xargs -0 -r cp --parents -t "$rootfs/app/$pkg")
done

# Everything readable by the non-root user, nothing writable by it: the image runs read-only.
chmod -R a+rX "$rootfs"
chmod 755 "$rootfs/app" "$rootfs/home/strata"
chown -R "$app_uid:$app_uid" "$rootfs/home/strata" 2>/dev/null || true
