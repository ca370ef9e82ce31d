#!/bin/bash
# Instructions a sample, counted: runs an agent binary under callgrind on a
# running farm and sink (../shared/bench/farm with --remote-write), zeroes
# the counters after WARMUP seconds, dumps them WINDOW seconds later, and
# prints how many samples the agent sent in between. Deterministic where
# CPU time on this machine moves by a fifth between runs: two runs of one
# build differed by 0.03 %, so a change of 1 % in a stage shows. Keep the farm small (10 targets of the
# 400k farm: callgrind slows the agent ~50-fold).
#
#   [PORT=19092] CONFIG=<prometheus.yml with the farm's first 10 targets> \
#     scripts/callgrind_agent.sh NAME ./tributary [WARMUP] [WINDOW]
#   callgrind_annotate --tree=calling --inclusive=yes NAME.*.out.1 | grep '=>'
set -euo pipefail
name=$1 bin=$2 warm=${3:-40} win=${4:-60}
listen=127.0.0.1:${PORT:-19091}
dir=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$name.%p.out" --dump-instr=no \
  "$bin" --config.file="$CONFIG" --storage.agent.path="$dir/data" \
  --web.listen-address=$listen >"$name.log" 2>&1 &
pid=$!
sent() {
  curl -s "http://$listen/metrics" |
    awk '/^prometheus_remote_storage_samples_total/ {s += $2} END {print s + 0}'
}
sleep "$warm"
callgrind_control -z "$pid" >/dev/null
s0=$(sent)
sleep "$win"
s1=$(sent)
callgrind_control -d "$pid" >/dev/null
sleep 2
kill "$pid"
wait "$pid" 2>/dev/null || true
rm -rf "$dir"
echo "$name: samples sent in the window: $((s1 - s0)) (counted per request, so +-1 request)"
