#!/usr/bin/env bash
# A failover drill: runs a load on a fresh topic, injects one fault, and reports how long until sends
# are acknowledged again and whether any acknowledged message was lost (docs/deploy.md, "Drills").
#
#   deploy/k8s/drills/drill.sh [--platform k8s|docker|FILE] broker-kill|bookie-kill|node-drain|broker-rolling-restart
#
# Prints one JSON report line on stdout; exits 0 when the cluster recovered with no loss.
# Settings are environment variables: see lib.sh and platform-<name>.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
platform=${DRILL_PLATFORM:-k8s}
if [ "${1:-}" = "--platform" ]; then
  platform=${2:?--platform needs k8s or docker}
  shift 2
fi
drill=${1:-}

# shellcheck source=lib.sh
source "$here/lib.sh"
case "$platform" in
  k8s) # shellcheck source=platform-k8s.sh
    source "$here/platform-k8s.sh" ;;
  docker) # shellcheck source=platform-docker.sh
    source "$here/platform-docker.sh" ;;
  *) # Any other platform: a file that defines the platform_* functions (lib.sh lists them).
    [ -f "$platform" ] || die "unknown platform $platform (k8s, docker, or a platform file)"
    # shellcheck source=/dev/null
    source "$platform" ;;
esac

case "$drill" in
  broker-kill) run_drill broker-kill fault_broker_kill ;;
  bookie-kill) run_drill bookie-kill fault_bookie_kill ;;
  node-drain) run_drill node-drain fault_node_drain ;;
  broker-rolling-restart) run_drill broker-rolling-restart fault_broker_rolling_restart ;;
  *) die "usage: drill.sh [--platform k8s|docker] broker-kill|bookie-kill|node-drain|broker-rolling-restart" ;;
esac
