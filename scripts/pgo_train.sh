#!/bin/bash
# Regenerates pgo/tributary.profdata.gz, the profile scripts/build_release.sh
# builds the release binary with. Run it after a change to a hot path
# (scrape, parse, WAL, watcher, queue, encoder): functions whose code changed
# since the profile was taken are built without it (slower, not wrong), and
# scripts/build_release.sh lists the hottest of them at the end of its output.
#
# The workload is the bench's, smaller: an instrumented build scrapes a
# farm of 20 targets x 2,000 gzip'd series every 5 s (../shared/bench/farm,
# nginx) and remote-writes to VictoriaMetrics; 90 s steady, then the sink
# stops, the agent is restarted during the outage, the sink comes back and
# the agent catches up from the WAL (so replay and catch-up are trained,
# not left cold), then a clean shutdown writes the counts. About 10
# minutes, half of it the instrumented build. Then build with the new
# profile and run scripts/layout_train.sh, which takes the link order from
# that build.
#
# Needs ../shared/bench/setup (nginx, victoria-metrics) and llvm-profdata
# matching rustc's LLVM (`rustup component add llvm-tools`).
#
#   scripts/pgo_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
farm_dir=$repo/../shared/bench
profdata_tool=$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | awk '/^host:/ {print $2}')/bin/llvm-profdata
if [ ! -x "$profdata_tool" ]; then
  echo "no $profdata_tool: rustup component add llvm-tools" >&2
  exit 1
fi
for tool in victoria-metrics nginx; do
  command -v "$tool" >/dev/null || { echo "no $tool: run ../shared/bench/setup" >&2; exit 1; }
done

work=$(mktemp -d /tmp/tributary-pgo.XXXXXX)
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

echo "building the instrumented binary (target/pgo-train)"
CARGO_TARGET_DIR=target/pgo-train RUSTFLAGS="-Cprofile-generate=$work/raw" \
  cargo build --release --locked -p tributary
bin=target/pgo-train/release/tributary

sink_port=18628
start_sink() {
  victoria-metrics -storageDataPath="$work/sink" -httpListenAddr=127.0.0.1:$sink_port \
    >>"$work/sink.log" 2>&1 &
  sink=$!
}
start_agent() {
  "$bin" --config.file="$work/prometheus.yml" --storage.agent.path="$work/data" \
    --web.listen-address=127.0.0.1:19490 >>"$work/agent.log" 2>&1 &
  agent=$!
}
stop() {
  kill -TERM "$1"
  for _ in $(seq 1 300); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "process $1 did not stop within 30 s" >&2
  exit 1
}

start_sink
"$farm_dir/farm" --targets 20 --series 2000 --interval 5s --for 7m --base-port 21000 \
  --remote-write http://127.0.0.1:$sink_port/api/v1/write >"$work/farm.log" 2>&1 &
for _ in $(seq 1 600); do
  config=$(awk '/^config:/ {print $2}' "$work/farm.log")
  [ -n "$config" ] && break
  sleep 1
done
[ -n "$config" ] || { echo "the farm did not start:" >&2; cat "$work/farm.log" >&2; exit 1; }
cp "$config" "$work/prometheus.yml"

echo "steady state, 90 s"
start_agent
sleep 90
echo "sink down, agent restarted during the outage, 60 s"
stop "$sink"
sleep 30
stop "$agent"
start_agent
sleep 30
echo "sink back, catch-up, 60 s"
start_sink
sleep 60
stop "$agent"

mkdir -p pgo
"$profdata_tool" merge --sparse -o "$work/tributary.profdata" "$work"/raw/*.profraw
gzip -9 -n -c "$work/tributary.profdata" >pgo/tributary.profdata.gz
echo "wrote pgo/tributary.profdata.gz ($(wc -c <pgo/tributary.profdata.gz) bytes)"
