#!/usr/bin/env bash
# Runs the bundled example end to end on this machine, with nothing else to
# install: builds Tributary, starts `tributary receive` (a remote-write
# receiver that prints what arrives) and the agent scraping itself, and shows
# the samples flowing. Stops both on Ctrl-C, or after DEMO_SECONDS if set.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p tributary
bin=target/release/tributary
data=$(mktemp -d)
"$bin" receive --web.listen-address=127.0.0.1:9201 --max-per-request 8 &
recv=$!
"$bin" --config.file=examples/prometheus.yml --storage.agent.path="$data" \
       --web.listen-address=127.0.0.1:9090 --log.level=warn &
agent=$!
cleanup() { kill "$agent" "$recv" 2>/dev/null || true; wait "$agent" "$recv" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT INT TERM
echo "Tributary UI: http://127.0.0.1:9090/  — samples arriving at the receiver are printed below (Ctrl-C to stop)" >&2
if [ -n "${DEMO_SECONDS:-}" ]; then sleep "$DEMO_SECONDS"; else wait "$agent"; fi
