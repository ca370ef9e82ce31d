#!/bin/bash
# What the request size costs the agent and its receiver, side by side: one
# agent binary run twice at once on one running farm, each instance with its
# own VictoriaMetrics sink and its own `queue_config.max_samples_per_send`,
# so that the machine's load moves both alike (see scripts/ab_together.sh:
# run each pair in both orders, the sizes swapped). WARMUP seconds
# after start, then WINDOW seconds; prints CPU ms per 1k samples of each
# agent and of its sink, requests and wire bytes a sample from the agent's
# own counters. Each instance's `queue_config` is appended to the end of
# CONFIG, so its last section must be the one `remote_write` entry (as in
# the farm's).
#
#   CONFIG=<farm's prometheus.yml> scripts/ab_request_size.sh 40 120 ./tributary 2000 10000
set -euo pipefail
warm=$1 win=$2 bin=$3
shift 3
sizes=("$@")
n=${#sizes[@]}
sink_port() { echo $((18528 + $1)); }
agent_port() { echo $((19190 + $1)); }
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
for i in "${!sizes[@]}"; do
  sink=$(sink_port "$i")
  { sed "s#url: .*#url: http://127.0.0.1:$sink/api/v1/write#" "$CONFIG"
    printf '    queue_config:\n      max_samples_per_send: %s\n' "${sizes[$i]}"
  } >"$dir/$i.yml"
  victoria-metrics -httpListenAddr=127.0.0.1:$sink -storageDataPath="$dir/vm$i" \
    -loggerLevel=ERROR >"$dir/vm$i.log" 2>&1 &
  pids+=($!)
done
sleep 2
for i in "${!sizes[@]}"; do
  "$bin" --config.file="$dir/$i.yml" --storage.agent.path="$dir/data$i" \
    --web.listen-address=127.0.0.1:"$(agent_port "$i")" >"$dir/agent$i.log" 2>&1 &
  pids+=($!)
done
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The sums of the agent's counters: samples, requests, bytes.
counters() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '
    /^prometheus_remote_storage_samples_total/ {s += $2}
    /^prometheus_remote_storage_sent_batch_duration_seconds_count/ {r += $2}
    /^prometheus_remote_storage_bytes_total/ {b += $2}
    END {print s + 0, r + 0, b + 0}'
}
sleep "$warm"
declare -A t0 c0
for i in "${!sizes[@]}"; do
  t0[a$i]=$(ticks "${pids[$((n + i))]}") t0[s$i]=$(ticks "${pids[$i]}")
  c0[$i]=$(counters "$(agent_port "$i")")
done
sleep "$win"
hz=$(getconf CLK_TCK)
for i in "${!sizes[@]}"; do
  ta=$(($(ticks "${pids[$((n + i))]}") - ${t0[a$i]})) ts=$(($(ticks "${pids[$i]}") - ${t0[s$i]}))
  read -r s1 r1 b1 <<<"$(counters "$(agent_port "$i")")"
  read -r s0 r0 b0 <<<"${c0[$i]}"
  awk -v m="${sizes[$i]}" -v sink="$(sink_port "$i")" -v ta="$ta" -v ts="$ts" -v hz="$hz" \
    -v s=$((s1 - s0)) -v r=$((r1 - r0)) -v b=$((b1 - b0)) 'BEGIN {
      k = s / 1000
      printf "max_samples_per_send %s (sink :%d): agent %.3f CPU ms/1k, sink %.3f CPU ms/1k, %d samples in %d requests, %.2f B/sample\n",
        m, sink, ta * 1000 / hz / k, ts * 1000 / hz / k, s, r, b / s }'
done
