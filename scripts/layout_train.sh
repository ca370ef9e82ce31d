#!/bin/bash
# Regenerates pgo/tributary.order, the order scripts/build_release.sh links
# the functions of the release binary in: the ones a running agent executes
# first, hottest first, so that its code sits in as few pages as possible
# and the pages of code it never runs (service discoveries it is not
# configured for, error paths) are never mapped. The kernel maps a binary's
# code 64 KiB around each page touched, so scattered code costs resident
# memory out of proportion to its size.
#
# Run it after scripts/pgo_train.sh (the order is taken from the binary
# built with the new profile) or when a change adds or renames functions
# on the agent's paths. Names the build no longer has are skipped by the
# linker; new functions land after the ordered ones (more pages mapped,
# not slower).
#
# The workload: the release binary under callgrind (every instruction
# counted, about 50 times slower) scrapes 10 targets of 2,000 series every
# 5 s (../shared/bench/farm, nginx) and itself, remote-writes to
# VictoriaMetrics, serves its web pages, reloads its configuration, rides
# out a sink outage with a restart (WAL replay) and catches up. About 6
# minutes. Needs valgrind, python3, ../shared/bench/setup (nginx,
# victoria-metrics) and target/release/tributary with its link map from
# scripts/build_release.sh.
#
# The edge builds have orders of their own (their functions are compiled
# differently and their symbols carry other hashes): `BIN` names the binary
# trained (its map beside it as BIN.map) and `ORDER` the file written, as
# scripts/build_edge.sh prints them.
#
#   scripts/layout_train.sh
#   BIN=target/edge/tributary ORDER=pgo/tributary-edge.order scripts/layout_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
farm_dir=$repo/../shared/bench
bin=${BIN:-target/release/tributary}
[[ $bin = /* ]] || bin=$repo/$bin
map=$bin.map
order=${ORDER:-pgo/tributary.order}
for tool in valgrind python3 curl; do
  command -v "$tool" >/dev/null || { echo "no $tool" >&2; exit 1; }
done
[ -x "$bin" ] && [ -s "$map" ] || { echo "no $bin or $map: run scripts/build_release.sh (or scripts/build_edge.sh)" >&2; exit 1; }

work=$(mktemp -d /tmp/tributary-layout.XXXXXX)
sink_port=18638
. scripts/training.sh

listen=127.0.0.1:19491
start_agent() {
  valgrind --tool=callgrind --dump-instr=yes --compress-pos=no --compress-strings=no \
    --callgrind-out-file="$work/callgrind.%p.out" \
    "$bin" --config.file="$work/prometheus.yml" --storage.agent.path="$work/data" \
    --web.listen-address=$listen >>"$work/agent.log" 2>&1 &
  agent=$!
}

start_sink
start_farm 10 21100 8m
# The agent scrapes itself too, as an idle agent on a device does.
awk -v listen="$listen" '{ print }
  /^scrape_configs:/ {
    print "  - job_name: self"
    print "    static_configs:"
    print "      - targets: [\"" listen "\"]"
  }' "$config" >"$work/prometheus.yml"

echo "steady state with the web pages and a reload, 120 s"
start_agent
sleep 60
for page in /-/healthy /-/ready /metrics /targets /service-discovery /config /flags /status \
  /api/v1/targets /api/v1/status/config /api/v1/status/flags /api/v1/status/runtimeinfo \
  /api/v1/status/buildinfo /api/v1/status/walreplay /nonexistent; do
  curl -s -o /dev/null "http://$listen$page" || true
done
kill -HUP "$agent"
sleep 60
echo "sink down, agent restarted during the outage, 90 s"
stop "$sink" 60
sleep 30
stop "$agent" 60
start_agent
sleep 60
echo "sink back, catch-up, 60 s"
start_sink
sleep 60
stop "$agent" 60

python3 scripts/layout_order.py "$map" "$bin" "$work"/callgrind.*.out >"$work/order"
mkdir -p pgo
mv "$work/order" "$order"
echo "wrote $order ($(wc -l <"$order") functions)"
