#!/bin/bash
# The release binary as it is measured and shipped: target/release/tributary
# built with profile-guided optimisation from pgo/tributary.profdata.gz (the
# counts of a bench-like run, see scripts/pgo_train.sh), its functions linked
# in the order of pgo/tributary.order (the code a running agent executes
# first, so that it maps fewer pages of it; see scripts/layout_train.sh),
# and at a fixed address, as Go links Prometheus: a position-independent
# executable makes the dynamic linker read 0.47 MiB of relocations at start
# and write a private copy of the 0.35 MiB of tables that hold pointers
# (`.data.rel.ro`), both resident for the process's life. `PIE=1` builds a
# position-independent one instead, its relocations packed (glibc 2.36 or
# newer runs it).
# The linker's map goes to target/release/tributary.map. Extra arguments go
# to cargo (e.g. --features ...). A plain `cargo build --release` builds the
# same program without the profile and in the compiler's order.
#
#   scripts/build_release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/pgo
gzip -dc pgo/tributary.profdata.gz >target/pgo/tributary.profdata
# LLVM builds a function whose code changed since the profile was taken
# without it, and says so in one warning a function. Those warnings are kept
# out of the build's output and summed up at the end, hottest first: a stale
# profile on a hot path cost 3.9 % of the agent's CPU once
# (docs/performance-history.md, "… the profile retrained on the current code …").
mismatch='function control flow change detected (hash mismatch)'
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# With fat LTO all Rust code is compiled in this last crate, so its
# relocation model is the program's (the C code stays position-independent,
# which links either way).
if [ "${PIE:-0}" = 1 ]; then
  address=(-Clink-arg=-Wl,-z,pack-relative-relocs)
else
  address=(-Crelocation-model=static)
fi
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PWD/target/pgo/tributary.profdata" \
  cargo rustc --release --locked -p tributary --bin tributary "$@" -- \
    -Clink-arg=-Wl,--symbol-ordering-file="$PWD/pgo/tributary.order" \
    -Clink-arg=-Wl,--no-warn-symbol-ordering \
    -Clink-arg=-Wl,-Map="$PWD/target/release/tributary.map" "${address[@]}" 2>&1 |
  tee "$log" | grep --line-buffered -vF "$mismatch"
stale=$(grep -cF "$mismatch" "$log" || true)
if [ "$stale" -gt 0 ]; then
  echo "profile: $stale functions changed since pgo/tributary.profdata.gz was taken and are built without it; the hottest (profile counts discarded):"
  sed -nE 's/.*\(hash mismatch\) ([^ ]+) Hash = [0-9]+ up to ([0-9]+) count discarded.*/\2 \1/p' "$log" |
    sort -rn | head -5 | { command -v c++filt >/dev/null && c++filt || cat; } | sed 's/^/  /'
  echo "retrain with scripts/pgo_train.sh if any of them is on a hot path"
fi
# Names in the order file that this build does not have.
. scripts/link_order.sh
report_missing pgo/tributary.order target/release/tributary.map scripts/layout_train.sh
