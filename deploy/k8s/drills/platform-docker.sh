# shellcheck shell=bash
# The drill platform for a cluster of containers on one Docker network (test/cluster/containers-harness.ts
# starts one): the same drill steps as on Kubernetes, with `docker kill` for a forced pod deletion and
# `docker stop` (SIGTERM, then SIGKILL after the grace period) for an eviction by a node drain.
# Settings: DOCKER_NETWORK (required), IMAGE (strata:dev), GRACE_SECONDS (60), RECREATE_SECONDS (5),
# BROKER_RECREATE_SECONDS (15),
# BROKER_HTTP_PORT (8080), and the labels the
# harness puts on its containers: strata.role=broker|bookie.
: "${DOCKER_NETWORK:?set DOCKER_NETWORK to the cluster network}"
: "${IMAGE:=strata:dev}"
: "${GRACE_SECONDS:=60}"
: "${BROKER_HTTP_PORT:=8080}"
: "${RECREATE_SECONDS:=5}"
: "${BROKER_RECREATE_SECONDS:=15}"
TOOLBOX="strata-drill-${DRILL_ID}"
STOPPED_FILE="$WORK_DIR/stopped-containers"

platform_setup() {
  log "toolbox container $TOOLBOX ($IMAGE) on $DOCKER_NETWORK"
  docker run -d --name "$TOOLBOX" --network "$DOCKER_NETWORK" --label strata.role=drill \
    --entrypoint /usr/bin/node "$IMAGE" -e 'setInterval(() => {}, 1 << 30)' >/dev/null
}

platform_teardown() {
  docker rm -f "$TOOLBOX" >/dev/null 2>&1 || true
}

platform_cli() {
  timeout "${CLI_TIMEOUT:-0}" docker exec "$TOOLBOX" /usr/bin/node /app/packages/cli/dist/bin.js "$@"
}

# The containers of a role on the network: "name ip alias..." per line.
containers_of() {
  local id
  for id in $(docker ps -q --filter "label=strata.role=$1" --filter "network=$DOCKER_NETWORK"); do
    docker inspect -f "{{.Name}} {{with index .NetworkSettings.Networks \"$DOCKER_NETWORK\"}}{{.IPAddress}} {{join .Aliases \" \"}}{{end}}" "$id" |
      sed 's#^/##'
  done
}

platform_target_of_address() {
  local host=${1%:*}
  containers_of broker | awk -v h="$host" '{ for (i = 1; i <= NF; i++) if ($i == h) { print $1; exit } }'
}

# Like a force-deleted pod: killed at once, and "recreated" later by starting the container again, as
# the StatefulSet (bookie) or Deployment (broker) controller would. A recreated broker keeps its
# address here (a Deployment's new pod would get a new one), so it comes back only after
# BROKER_RECREATE_SECONDS, past the broker's metadata session TTL (10 s by default).
platform_kill() {
  local delay=$RECREATE_SECONDS
  docker kill "$1"
  [ "$(docker inspect -f '{{index .Config.Labels "strata.role"}}' "$1")" != broker ] || delay=$BROKER_RECREATE_SECONDS
  # In the background, so that probing starts at once. A `bash -c` (an exec), not a ( ) subshell: a
  # subshell would inherit the descriptor bash saved for the caller's redirection and hold the caller's
  # `$(...)` open until the restart, which the drill would then count as recovery time.
  bash -c 'sleep "$0" && docker start "$1"' "$delay" "$1" >/dev/null 2>&1 &
}

platform_bookies() {
  containers_of bookie | awk '{ print $1 }'
}

platform_drain_node_of() {
  echo "$1" >>"$STOPPED_FILE"
  docker stop -t "$GRACE_SECONDS" "$1"
}

# Brings every stopped container of the cluster back, so that the next drill starts whole.
platform_undrain() {
  local id
  rm -f "$STOPPED_FILE"
  for id in $(docker ps -aq --filter "status=exited" --filter "network=$DOCKER_NETWORK" --filter label=strata.role); do
    log "starting $(docker inspect -f '{{.Name}}' "$id" | sed 's#^/##') again"
    docker start "$id" >/dev/null
  done
}

wait_ready() {
  local name=$1 i
  for i in $(seq 120); do
    if docker exec "$TOOLBOX" /usr/bin/node -e "fetch('http://$name:$BROKER_HTTP_PORT/readyz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"; then
      return 0
    fi
    [ "$i" -lt 120 ] && sleep 1
  done
  die "$name not ready after a restart"
}

platform_rolling_restart_brokers() {
  local name
  for name in $(containers_of broker | awk '{ print $1 }'); do
    log "restarting $name"
    docker restart -t "$GRACE_SECONDS" "$name" >/dev/null
    wait_ready "$name"
  done
}
