# shellcheck shell=bash
# Failover drill steps, shared by every platform. Sourced by drill.sh after a platform file
# (platform-k8s.sh or platform-docker.sh) that defines:
#   platform_setup / platform_teardown      start and remove whatever runs the strata CLI
#   platform_cli ARGS...                    run `strata ARGS...` where the cluster is reachable, for at
#                                           most CLI_TIMEOUT seconds when that is set and not 0
#   platform_target_of_address HOST:PORT    the broker (pod, container) behind an advertised address
#   platform_kill TARGET                    kill it at once (k8s: delete --grace-period=0 --force)
#   platform_bookies                        the bookies, one per line
#   platform_drain_node_of TARGET           drain the node TARGET runs on (and remember it)
#   platform_undrain                        make drained nodes schedulable again
#   platform_rolling_restart_brokers        restart every broker, one at a time, and wait
# KILL_CMD, when set, replaces platform_kill: `$KILL_CMD TARGET` (e.g. KILL_CMD="docker kill").
#
# Settings (environment): TOPIC (a fresh one per run by default), SERVICE_URL, LOAD_RATE (msg/s),
# TRACER_RATE (numbered msg/s), LOAD_SECONDS, SETTLE_SECONDS (load before the fault),
# PROBE_TIMEOUT_SECONDS, RECOVERY_TIMEOUT_SECONDS, VERIFY_SECONDS (reading back), REPORT (a file to
# append the JSON report to). The report: recoveryMs (from the start of the fault to the first send
# acknowledged after the fault step returned: for a rolling restart or a drain it includes the step;
# baselineProbeMs is what one probe takes before the fault, CLI start included),
# the perf load's acknowledged sends, errors, longest publish latency and seconds without any
# acknowledged send, the tracer's acknowledged, lost and duplicated messages, and how long the
# read-back took to deliver every acknowledged tracer message (readBackMs, -1 if not within VERIFY_SECONDS).

: "${SERVICE_URL:=pulsar://broker:6650}"
: "${LOAD_RATE:=200}"
: "${LOAD_SECONDS:=60}"
: "${SETTLE_SECONDS:=10}"
: "${PROBE_TIMEOUT_SECONDS:=10}"
: "${RECOVERY_TIMEOUT_SECONDS:=120}"
: "${VERIFY_SECONDS:=60}"
: "${TRACER_RATE:=20}"
: "${WORK_DIR:=$(mktemp -d "${TMPDIR:-/tmp}/strata-drill.XXXXXX")}"
DRILL_ID=${DRILL_ID:-$(date -u +%Y%m%d%H%M%S)-$$}
: "${TOPIC:=persistent://public/default/drill-$DRILL_ID}"

log() { printf '%s drill: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }

strata() { platform_cli "$@" --service-url "$SERVICE_URL"; }

# --- parsing the CLI's JSON (no jq needed: the shapes are fixed by packages/cli/src/commands) ---------

# `strata admin topics partitioned-lookup T --json` prints [{"topic":..,"range":..,"owner":..,"url":..}];
# prints the owner's host:port, nothing when the bundle is unowned.
parse_owner_address() {
  tr -d '\n' | grep -oE '"url": *"[^"]*"' | head -n1 | sed -E 's/.*"url": *"([a-z+]+:\/\/)?([^"\/]*).*/\2/'
}

# `strata perf produce --json` ends with {"type":"summary",...,"publish":{"messages":N,...,"errors":E,...}};
# prints "N E" (acknowledged sends, failed sends).
parse_perf_summary() {
  grep '"type":"summary"' | tail -n1 | sed -nE 's/.*"publish":\{"messages":([0-9]+),.*"errors":([0-9]+).*/\1 \2/p'
}

# The longest publish latency of the perf load (ms), from its summary.
parse_perf_max_latency() {
  grep '"type":"summary"' | tail -n1 | sed -nE 's/.*"publish":\{[^}]*"maxMs":([0-9.]+).*/\1/p'
}

# Seconds of the perf load in which no send was acknowledged (its one-second interval reports).
parse_perf_stalled_seconds() {
  grep -c '"type":"interval".*"publish":{"messages":0,' || true
}

# --- steps -----------------------------------------------------------------------------------------

owner_address() {
  strata admin topics partitioned-lookup "$TOPIC" --json | parse_owner_address
}

kill_target() {
  if [ -n "${KILL_CMD:-}" ]; then
    local -a cmd
    read -r -a cmd <<<"$KILL_CMD"
    "${cmd[@]}" "$1"
  else
    platform_kill "$1"
  fi
}

# The broker that owns TOPIC now, killed at once. Prints the target killed.
kill_owner() {
  local address target
  address=$(owner_address)
  [ -n "$address" ] || die "no owner for $TOPIC"
  target=$(platform_target_of_address "$address")
  [ -n "$target" ] || die "no broker found behind $address"
  log "owner of $TOPIC is $address ($target): killing it"
  kill_target "$target" >&2
  echo "$target"
}

# Two producers on TOPIC: `strata perf produce` for the load, and a tracer that sends numbered
# messages (drill-seq-1, drill-seq-2, ...) so that losses can be named. A producer keeps order, so when
# the tracer reports "X messages successfully produced" (or "produced X/N" on failure), 1..X were
# acknowledged.
start_load() {
  local n=$((TRACER_RATE * LOAD_SECONDS)) list
  log "load: $LOAD_RATE msg/s (perf) + $TRACER_RATE msg/s (tracer, $n numbered) for ${LOAD_SECONDS}s on $TOPIC"
  strata perf produce "$TOPIC" --rate "$LOAD_RATE" --test-duration "$LOAD_SECONDS" --warmup-time 0 \
    --report-interval 1 --json >"$WORK_DIR/load.jsonl" 2>"$WORK_DIR/load.err" &
  LOAD_PID=$!
  list=$(seq -s, -f 'drill-seq-%.0f' 1 "$n")
  strata produce "$TOPIC" -m "$list" -s , --rate "$TRACER_RATE" >"$WORK_DIR/tracer.out" 2>"$WORK_DIR/tracer.err" &
  TRACER_PID=$!
}

wait_load() {
  wait "$LOAD_PID" || log "load generator exited with $? (see $WORK_DIR/load.err)"
  wait "$TRACER_PID" || log "tracer exited with $? (see $WORK_DIR/tracer.err)"
}

# Acknowledged tracer messages: "N messages successfully produced" on stdout when all were, else the
# last "produced X/N" (progress lines on stderr, the last one written when the command failed).
tracer_acked() {
  local n
  n=$(sed -nE 's/^([0-9]+) messages successfully produced.*/\1/p' "$WORK_DIR/tracer.out" 2>/dev/null | tail -n1)
  [ -n "$n" ] || n=$(sed -nE 's/.*produced ([0-9]+)\/[0-9]+.*/\1/p' "$WORK_DIR/tracer.err" 2>/dev/null | tail -n1)
  echo "${n:-0}"
}

# Waits until a send to TOPIC is acknowledged again; prints the milliseconds since $1 (a now_ms).
wait_recovered() {
  local since=$1 deadline=$(($(now_ms) + RECOVERY_TIMEOUT_SECONDS * 1000)) n=0
  while [ "$(now_ms)" -lt "$deadline" ]; do
    n=$((n + 1))
    if CLI_TIMEOUT=$PROBE_TIMEOUT_SECONDS strata produce "$TOPIC" -m "drill-probe-$n" >/dev/null 2>>"$WORK_DIR/probes.err"; then
      echo "$(($(now_ms) - since))"
      return 0
    fi
    sleep 0.5
  done
  return 1
}

# Counts the distinct tracer numbers 1..ACKED in a file of consumed messages.
tracer_seen() {
  grep -oE 'drill-seq-[0-9]+' "$1" 2>/dev/null | sed 's/drill-seq-//' | awk -v acked="$2" '$1 <= acked && !($1 in s) { s[$1]; n++ } END { print n + 0 }'
}

# Reads TOPIC from the start with a fresh subscription until every acknowledged tracer message
# (1..ACKED) has arrived, or VERIFY_SECONDS pass. Sets READ_BACK_MS (-1 when not all arrived) and
# leaves the tracer numbers read, one per line, sorted (duplicates kept), in $WORK_DIR/read-back.
read_back_tracer() {
  local acked=$1 out="$WORK_DIR/read-back.jsonl" pid t0 deadline
  t0=$(now_ms)
  deadline=$((t0 + VERIFY_SECONDS * 1000))
  READ_BACK_MS=-1
  CLI_TIMEOUT=$VERIFY_SECONDS strata consume "$TOPIC" -s "drill-verify-$DRILL_ID" -p Earliest -n 0 --json >"$out" 2>"$WORK_DIR/read-back.err" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do
    if [ "$(tracer_seen "$out" "$acked")" -ge "$acked" ]; then
      READ_BACK_MS=$(($(now_ms) - t0))
      break
    fi
    sleep 0.5
  done
  [ "$READ_BACK_MS" -ge 0 ] || [ "$(tracer_seen "$out" "$acked")" -lt "$acked" ] || READ_BACK_MS=$(($(now_ms) - t0))
  # The consumer reads until interrupted: stop it (its `timeout`, which passes the signal on).
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -oE 'drill-seq-[0-9]+' "$out" | sed 's/drill-seq-//' | sort -n >"$WORK_DIR/read-back" || true
}

# compare_tracer ACKED < numbers read: prints "LOST DUPLICATES FIRST_LOST" (FIRST_LOST is - when none).
compare_tracer() {
  local acked=$1
  awk -v acked="$acked" '
    { seen[$1]++ }
    END {
      lost = 0; dup = 0; first = "-"
      for (i = 1; i <= acked; i++) if (!(i in seen)) { lost++; if (first == "-") first = i }
      for (k in seen) if (seen[k] > 1) dup += seen[k] - 1
      print lost, dup, first
    }'
}

# --- a drill: load, settle, fault, recovery, verification, report -----------------------------------

# run_drill NAME FAULT_FUNCTION
run_drill() {
  local name=$1 fault=$2 t0 baseline_ms recovery_ms target summary perf_acked perf_errors max_latency stalled acked lost dups first report
  platform_setup
  trap 'platform_undrain || true; platform_teardown || true' EXIT
  start_load
  sleep "$SETTLE_SECONDS"
  # What one probe costs with nothing wrong (a CLI process: start, lookup, connect, send).
  t0=$(now_ms)
  baseline_ms=$(wait_recovered "$t0") || baseline_ms=-1
  t0=$(now_ms)
  target=$("$fault")
  if recovery_ms=$(wait_recovered "$t0"); then
    log "$name: sends acknowledged again after ${recovery_ms} ms"
  else
    recovery_ms=-1
    log "$name: no acknowledged send within ${RECOVERY_TIMEOUT_SECONDS}s"
  fi
  wait_load
  platform_undrain || true
  summary=$(parse_perf_summary <"$WORK_DIR/load.jsonl")
  perf_acked=${summary% *} perf_errors=${summary#* }
  [ -n "$summary" ] || { perf_acked=-1 perf_errors=-1; log "no perf summary (see $WORK_DIR/load.err)"; }
  max_latency=$(parse_perf_max_latency <"$WORK_DIR/load.jsonl")
  stalled=$(parse_perf_stalled_seconds <"$WORK_DIR/load.jsonl")
  acked=$(tracer_acked)
  read_back_tracer "$acked"
  read -r lost dups first < <(compare_tracer "$acked" <"$WORK_DIR/read-back")
  report=$(printf '{"drill":"%s","id":"%s","topic":"%s","target":"%s","recoveryMs":%s,"baselineProbeMs":%s,"perfAcknowledged":%s,"perfSendErrors":%s,"perfMaxLatencyMs":%s,"perfStalledSeconds":%s,"tracerAcknowledged":%s,"tracerLost":%s,"tracerDuplicates":%s,"firstLost":"%s","readBackMs":%s}' \
    "$name" "$DRILL_ID" "$TOPIC" "$target" "$recovery_ms" "$baseline_ms" "$perf_acked" "$perf_errors" "${max_latency:--1}" "$stalled" "$acked" "$lost" "$dups" "$first" "$READ_BACK_MS")
  echo "$report"
  [ -z "${REPORT:-}" ] || echo "$report" >>"$REPORT"
  [ "$recovery_ms" -ge 0 ] && [ "$lost" -eq 0 ] && [ "$acked" -gt 0 ]
}

# --- faults ----------------------------------------------------------------------------------------

fault_broker_kill() { kill_owner; }

fault_bookie_kill() {
  local target
  target=$(platform_bookies | head -n1)
  [ -n "$target" ] || die "no bookie found"
  log "killing bookie $target"
  kill_target "$target" >&2
  echo "$target"
}

fault_node_drain() {
  local address target
  address=$(owner_address)
  target=$(platform_target_of_address "$address")
  [ -n "$target" ] || die "no broker found behind $address"
  log "draining the node of $target (owner of $TOPIC)"
  platform_drain_node_of "$target" >&2
  echo "$target"
}

fault_broker_rolling_restart() {
  log "rolling restart of every broker"
  platform_rolling_restart_brokers >&2
  echo "all-brokers"
}
