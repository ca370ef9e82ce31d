#!/bin/bash
# A/B of agent binaries run side by side: every binary scrapes the same
# running farm (../shared/bench/farm with --remote-write to a running sink)
# at the same time, so the machine's load moves all of them alike (run one
# after another, one binary's CPU figure moves by 15 % between runs; side
# by side, two builds that made no difference read 2.0 % and 0.3 % apart,
# the one started second lower each time: run each pair in both orders,
# and take less than ~2 % in one order for no result). WARMUP
# seconds after start, then WINDOW seconds; prints CPU ms per 1k samples
# from /proc and each agent's own remote-write sample counter.
#
#   CONFIG=<farm's prometheus.yml> scripts/ab_together.sh 40 120 ./a ./b
set -euo pipefail
warm=$1 win=$2
shift 2
pids=() ports=() dirs=()
for i in $(seq 0 $(($# - 1))); do
  bin=${@:$((i + 1)):1}
  dir=$(mktemp -d) port=$((19190 + i))
  "$bin" --config.file="$CONFIG" --storage.agent.path="$dir/data" \
    --web.listen-address=127.0.0.1:$port >"$dir/log" 2>&1 &
  pids+=($!) ports+=($port) dirs+=("$dir")
done
sent() {
  curl -s "http://127.0.0.1:$1/metrics" |
    awk '/^prometheus_remote_storage_samples_total/ {s += $2} END {print s + 0}'
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sleep "$warm"
t0=() s0=()
for i in "${!pids[@]}"; do
  t0+=("$(ticks "${pids[$i]}")") s0+=("$(sent "${ports[$i]}")")
done
sleep "$win"
for i in "${!pids[@]}"; do
  t=$(($(ticks "${pids[$i]}") - t0[i])) s=$(($(sent "${ports[$i]}") - s0[i]))
  awk -v b="$(basename "${@:$((i + 1)):1}")" -v t="$t" -v s="$s" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%s: %d ms CPU, %d samples, %.3f CPU ms/1k samples\n", b, t * 1000 / hz, s, t * 1000 / hz / (s / 1000) }'
done
kill "${pids[@]}"
wait 2>/dev/null || true
rm -rf "${dirs[@]}"
