#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft) for local runs and CI, from Maven Central
# artifacts (pom.xml), without Docker or a tarball download.
#
#   deploy/kafka/kafka.sh start    fetch the jars if missing, format storage once, start, wait until ready
#   deploy/kafka/kafka.sh wait     wait until the running broker answers Kafka requests
#   deploy/kafka/kafka.sh status   print whether it runs (exit 0) or not (exit 3)
#   deploy/kafka/kafka.sh stop     SIGTERM, wait for a clean exit, SIGKILL after KAFKA_STOP_TIMEOUT
#   deploy/kafka/kafka.sh fetch    only fetch the jars into deploy/kafka/lib
#
# Environment:
#   KAFKA_DATA_DIR        data, pid and logs (default <repo>/.cache/kafka)
#   KAFKA_PORT            client port on 127.0.0.1 (default 9092); the controller uses KAFKA_PORT+1
#   KAFKA_HEAP_OPTS       JVM heap (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT   seconds to wait for readiness (default 90)
#   KAFKA_STOP_TIMEOUT    seconds to wait for a clean exit before SIGKILL (default 30)
# The bootstrap address to give clients is printed by start: 127.0.0.1:$KAFKA_PORT.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DATA_DIR="${KAFKA_DATA_DIR:-$REPO/.cache/kafka}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="$((PORT + 1))"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
M2_REPO="${KAFKA_M2_REPO:-$REPO/.cache/m2}"
LIB="$HERE/lib"
PID_FILE="$DATA_DIR/kafka.pid"
LOG_DIR="$DATA_DIR/logs"
CONFIG="$DATA_DIR/server.properties"
CLASSES="$DATA_DIR/classes"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$HERE/pom.xml")"

log() { echo "kafka.sh: $*"; }
die() { echo "kafka.sh: error: $*" >&2; exit 1; }

# The pid of our broker if it is alive (and really is a Kafka JVM, not a reused pid).
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid; pid="$(cat "$PID_FILE")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka.Kafka' || return 1
  echo "$pid"
}

fetch() {
  if [[ -f "$LIB/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (and a JDK 17+) to fetch Kafka"
  log "fetching Apache Kafka $KAFKA_VERSION (org.apache.kafka:kafka_2.13) from Maven Central into $LIB"
  local t0=$SECONDS
  rm -rf "$LIB"  # a version change must not leave two kafka-clients on the class path
  mkdir -p "$(dirname "$M2_REPO")"
  local mvn_log
  mvn_log="$(dirname "$M2_REPO")/kafka-fetch.log"
  # Maven prints only colour codes with -q; its output goes to a file, shown if it fails.
  if ! mvn -q -B -Dstyle.color=never -f "$HERE/pom.xml" -Dmaven.repo.local="$M2_REPO" \
      dependency:copy-dependencies >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    die "mvn dependency:copy-dependencies failed (output above)"
  fi
  log "fetched $(ls "$LIB" | wc -l) jars in $((SECONDS - t0))s"
}

# Compile the readiness probe once per data dir (a single-file launch would compile each time).
probe_classes() {
  if [[ ! -f "$CLASSES/Ready.class" || "$HERE/Ready.java" -nt "$CLASSES/Ready.class" \
        || "$LIB/kafka-clients-$KAFKA_VERSION.jar" -nt "$CLASSES/Ready.class" ]]; then
    mkdir -p "$CLASSES"
    javac -nowarn -cp "$LIB/*" -d "$CLASSES" "$HERE/Ready.java" || die "cannot compile Ready.java"
  fi
}

write_config() {
  mkdir -p "$DATA_DIR/data" "$LOG_DIR"
  {
    cat "$HERE/server.properties"
    echo
    echo "# --- written by kafka.sh: these override the keys above ---"
    echo "log.dirs=$DATA_DIR/data"
    echo "controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT"
    echo "listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
  } >"$CONFIG"
}

# Format the storage once. The standalone controller's address is written into the
# metadata log at format time, so a data dir formatted for another port is reformatted.
format_storage() {
  local marker="$DATA_DIR/formatted-for"
  local want="kafka=$KAFKA_VERSION port=$PORT"
  if [[ -f "$DATA_DIR/data/meta.properties" && -f "$marker" ]]; then
    local have; have="$(cat "$marker")"
    if [[ "${have#* }" == "port=$PORT" ]]; then
      return 0
    fi
    log "data dir was formatted for '$have', now '$want': wiping $DATA_DIR/data"
  fi
  rm -rf "$DATA_DIR/data" && mkdir -p "$DATA_DIR/data"
  local cluster_id
  cluster_id="$(java -cp "$LIB/*" kafka.tools.StorageTool random-uuid)"
  log "formatting storage in $DATA_DIR/data (cluster id $cluster_id, standalone KRaft controller)"
  java -cp "$LIB/*" -Dlog4j2.configurationFile="$HERE/log4j2.properties" -Dkafka.logs.dir="$LOG_DIR" \
    kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$CONFIG" >"$LOG_DIR/format.log" 2>&1 \
    || { cat "$LOG_DIR/format.log" >&2; die "storage format failed"; }
  echo "$want" >"$marker"
}

log_tail() {
  echo "----- last lines of $LOG_DIR/server.log -----" >&2
  tail -n 40 "$LOG_DIR/server.log" >&2 2>/dev/null || true
  echo "----- last lines of $LOG_DIR/stdout.log -----" >&2
  tail -n 20 "$LOG_DIR/stdout.log" >&2 2>/dev/null || true
}

wait_ready() {
  local pid="${1:-}"
  probe_classes
  local t0=$SECONDS
  local cluster_id=""
  if [[ -n "$pid" ]]; then
    cluster_id="$(sed -n 's/^cluster.id=//p' "$DATA_DIR/data/meta.properties" 2>/dev/null || true)"
  fi
  # shellcheck disable=SC2086  # pid and cluster_id are optional arguments
  if ! java -Xmx64m -cp "$LIB/*:$CLASSES" -Dlog4j2.level=ERROR Ready "127.0.0.1:$PORT" "$START_TIMEOUT" \
      $pid $cluster_id; then
    log_tail
    die "Kafka is not ready on 127.0.0.1:$PORT (timeout ${START_TIMEOUT}s; reason and log tail above)"
  fi
  log "Kafka $KAFKA_VERSION answers on 127.0.0.1:$PORT (waited $((SECONDS - t0))s)"
}

# The client port the running broker of this data dir was started with.
running_port() { cat "$DATA_DIR/kafka.port" 2>/dev/null || echo "?"; }

start() {
  local pid
  if pid="$(running_pid)"; then
    if [[ "$(running_port)" != "$PORT" ]]; then
      die "the broker of $DATA_DIR already runs (pid $pid) on port $(running_port), not $PORT:" \
          "stop it first, or use another KAFKA_DATA_DIR"
    fi
    log "already running (pid $pid) on 127.0.0.1:$PORT"
    wait_ready "$pid"
    return 0
  fi
  command -v java >/dev/null || die "java not found: Kafka $KAFKA_VERSION needs a JDK/JRE 17+"
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "port 127.0.0.1:$p is already in use (another broker?): set KAFKA_PORT to a free port"
    fi
  done
  local t0=$SECONDS
  fetch
  write_config
  format_storage
  log "starting Apache Kafka $KAFKA_VERSION from Maven artifacts: KRaft broker+controller," \
      "client port 127.0.0.1:$PORT, controller 127.0.0.1:$CONTROLLER_PORT, data $DATA_DIR, heap '$HEAP_OPTS'"
  # shellcheck disable=SC2086  # HEAP_OPTS is a list of JVM flags
  nohup java $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOG_DIR" -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
    -cp "$LIB/*" kafka.Kafka "$CONFIG" >"$LOG_DIR/stdout.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$PORT" >"$DATA_DIR/kafka.port"
  log "broker pid $pid, log $LOG_DIR/server.log"
  wait_ready "$pid"
  log "started in $((SECONDS - t0))s"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping broker pid $pid (SIGTERM, up to ${STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if (( waited >= STOP_TIMEOUT * 10 )); then
      log "no clean exit after ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$PID_FILE"
  log "stopped"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    log "running (pid $pid), Kafka $KAFKA_VERSION on 127.0.0.1:$(running_port), data $DATA_DIR"
  else
    log "not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  wait)
    pid="$(running_pid)" || { log_tail; die "not running"; }
    PORT="$(running_port)"
    wait_ready "$pid" ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|status|wait|fetch" >&2; exit 2 ;;
esac
