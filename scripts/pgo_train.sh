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
work=$(mktemp -d /tmp/tributary-pgo.XXXXXX)
sink_port=18628
. scripts/training.sh

echo "building the instrumented binary (target/pgo-train)"
CARGO_TARGET_DIR=target/pgo-train RUSTFLAGS="-Cprofile-generate=$work/raw" \
  cargo build --release --locked -p tributary
bin=target/pgo-train/release/tributary

start_agent() {
  "$bin" --config.file="$work/prometheus.yml" --storage.agent.path="$work/data" \
    --web.listen-address=127.0.0.1:19490 >>"$work/agent.log" 2>&1 &
  agent=$!
}

start_sink
start_farm 20 21000 7m
cp "$config" "$work/prometheus.yml"

echo "steady state, 90 s"
start_agent
sleep 90
echo "sink down, agent restarted during the outage, 60 s"
stop "$sink" 30
sleep 30
stop "$agent" 30
start_agent
sleep 30
echo "sink back, catch-up, 60 s"
start_sink
sleep 60
stop "$agent" 30

mkdir -p pgo
"$profdata_tool" merge --sparse -o "$work/tributary.profdata" "$work"/raw/*.profraw
gzip -9 -n -c "$work/tributary.profdata" >pgo/tributary.profdata.gz
echo "wrote pgo/tributary.profdata.gz ($(wc -c <pgo/tributary.profdata.gz) bytes)"
