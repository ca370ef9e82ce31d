#!/bin/bash
# A/B of agent binaries on one running farm and sink (../shared/bench/farm
# with --remote-write to a running sink): each binary in turn, ROUNDS
# times interleaved, WARMUP seconds after start then WINDOW seconds of
# 1 Hz readings from /proc. Prints CPU ms per 1k samples (SAMPLES_PER_S
# expected), average RSS, bytes per series (SERIES) and wire bytes per
# sample from the agent's own remote-write counters.
#
#   CONFIG=<farm's prometheus.yml> SAMPLES_PER_S=40100 SERIES=401000 \
#     scripts/ab_agents.sh 2 40 60 ./a ./b
set -euo pipefail
rounds=$1 warm=$2 win=$3
shift 3
listen=127.0.0.1:19090
for r in $(seq 1 "$rounds"); do
  for bin in "$@"; do
    dir=$(mktemp -d)
    "$bin" --config.file="$CONFIG" --storage.agent.path="$dir/data" \
      --web.listen-address=$listen >"$dir/log" 2>&1 &
    pid=$!
    sleep "$warm"
    ticks0=$(awk '{print $14+$15}' /proc/$pid/stat)
    rss_sum=0
    for _ in $(seq 1 "$win"); do
      sleep 1
      rss_sum=$((rss_sum + $(awk '/^VmRSS/{print $2}' /proc/$pid/status)))
    done
    ticks1=$(awk '{print $14+$15}' /proc/$pid/stat)
    metrics=$(curl -s http://$listen/metrics)
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    bytes=$(echo "$metrics" | awk '/^prometheus_remote_storage_bytes_total/{s+=$2} END{print s+0}')
    sent=$(echo "$metrics" | awk '/^prometheus_remote_storage_samples_total/{s+=$2} END{print s+1}')
    awk -v b="$(basename "$bin")" -v r="$r" -v t=$((ticks1 - ticks0)) -v w="$win" \
      -v sps="$SAMPLES_PER_S" -v rss="$rss_sum" -v n="$SERIES" -v by="$bytes" -v s="$sent" \
      'BEGIN { printf "%s round %d: %.3f CPU ms/1k samples, RSS %.1f MiB, %d B/series, %.1f wire B/sample\n",
               b, r, t * 10 / (w * sps / 1000), rss / w / 1024, rss * 1024 / w / n, by / s }'
    rm -rf "$dir"
  done
done
