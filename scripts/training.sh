# Sourced by scripts/pgo_train.sh and scripts/layout_train.sh: the farm,
# the VictoriaMetrics sink and the clean-up a training run shares. The
# caller sets `work` (its temporary directory), `farm_dir` and `sink_port`
# first; the agent it starts writes `$work/agent.log`.

stop_all() {
  local status=$?
  # Only this script's own background jobs (the farm, the sink, the agent).
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  # The work directory goes with the logs that would say why a run failed.
  if [ "$status" -ne 0 ] && [ -s "$work/agent.log" ]; then
    echo "the agent's log, last lines:" >&2
    tail -n 20 "$work/agent.log" >&2
  fi
  rm -rf "$work"
}
trap stop_all EXIT

for tool in victoria-metrics nginx; do
  command -v "$tool" >/dev/null || { echo "no $tool: run ../shared/bench/setup" >&2; exit 1; }
done

start_sink() {
  victoria-metrics -storageDataPath="$work/sink" -httpListenAddr=127.0.0.1:$sink_port \
    >>"$work/sink.log" 2>&1 &
  sink=$!
}

# stop PID SECONDS: SIGTERM, then fail the run if it has not ended in time.
stop() {
  kill -TERM "$1"
  for _ in $(seq 1 $(($2 * 10))); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "process $1 did not stop within $2 s" >&2
  exit 1
}

# start_farm TARGETS BASE_PORT DURATION: 2,000 series a target every 5 s,
# remote-writing its own series to the sink; sets `config` to the farm's
# prometheus.yml.
start_farm() {
  "$farm_dir/farm" --targets "$1" --series 2000 --interval 5s --for "$3" --base-port "$2" \
    --remote-write http://127.0.0.1:$sink_port/api/v1/write >"$work/farm.log" 2>&1 &
  config=
  for _ in $(seq 1 600); do
    config=$(awk '/^config:/ {print $2}' "$work/farm.log")
    [ -n "$config" ] && return 0
    sleep 1
  done
  echo "the farm did not start:" >&2
  cat "$work/farm.log" >&2
  exit 1
}
