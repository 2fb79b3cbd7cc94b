# shellcheck shell=bash
# The drill platform for a Kubernetes cluster deployed from deploy/k8s (kubectl's current context).
# The strata CLI runs in a toolbox pod of the Strata image, inside the cluster, so that it reaches the
# brokers' advertised addresses (pod IPs). Settings: NAMESPACE (strata), IMAGE (the broker's image).
: "${NAMESPACE:=strata}"
KUBECTL=(kubectl -n "$NAMESPACE")
TOOLBOX="strata-drill-${DRILL_ID}"
DRAINED_NODES_FILE="$WORK_DIR/drained-nodes"

platform_setup() {
  local image=${IMAGE:-}
  [ -n "$image" ] || image=$("${KUBECTL[@]}" get deployment broker -o jsonpath='{.spec.template.spec.containers[0].image}')
  [ -n "$image" ] || die "no broker Deployment in namespace $NAMESPACE (set NAMESPACE or IMAGE)"
  log "toolbox pod $TOOLBOX ($image)"
  # The image has no shell: node idles as the toolbox's main process.
  "${KUBECTL[@]}" run "$TOOLBOX" --image="$image" --restart=Never --labels=app.kubernetes.io/name=strata-drill \
    --command -- /usr/bin/node -e 'setInterval(() => {}, 1 << 30)' >/dev/null
  "${KUBECTL[@]}" wait --for=condition=Ready "pod/$TOOLBOX" --timeout=120s >/dev/null
}

platform_teardown() {
  "${KUBECTL[@]}" delete pod "$TOOLBOX" --wait=false --ignore-not-found >/dev/null
}

platform_cli() {
  timeout "${CLI_TIMEOUT:-0}" "${KUBECTL[@]}" exec "$TOOLBOX" -- /usr/bin/node /app/packages/cli/dist/bin.js "$@"
}

# A broker advertises its pod IP (deploy/k8s/base/broker.yaml); a pod name is accepted too.
platform_target_of_address() {
  local host=${1%:*}
  "${KUBECTL[@]}" get pods -l app.kubernetes.io/name=broker \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.podIP}{"\n"}{end}' |
    awk -v h="$host" '$2 == h || $1 == h || index(h, $1 ".") == 1 { print $1; exit }'
}

platform_kill() {
  "${KUBECTL[@]}" delete pod "$1" --grace-period=0 --force --wait=false
}

platform_bookies() {
  "${KUBECTL[@]}" get pods -l app.kubernetes.io/name=bookie -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

# Drains through the eviction API, so PodDisruptionBudgets apply; the toolbox pod stays.
platform_drain_node_of() {
  local node
  node=$("${KUBECTL[@]}" get pod "$1" -o jsonpath='{.spec.nodeName}')
  [ -n "$node" ] || die "pod $1 has no node"
  echo "$node" >>"$DRAINED_NODES_FILE"
  log "draining node $node"
  kubectl drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=300s \
    --pod-selector='app.kubernetes.io/name!=strata-drill'
}

platform_undrain() {
  [ -f "$DRAINED_NODES_FILE" ] || return 0
  local node
  while read -r node; do
    log "uncordon $node"
    kubectl uncordon "$node"
  done <"$DRAINED_NODES_FILE"
  rm -f "$DRAINED_NODES_FILE"
}

platform_rolling_restart_brokers() {
  "${KUBECTL[@]}" rollout restart deployment/broker
  "${KUBECTL[@]}" rollout status deployment/broker --timeout=600s
}
