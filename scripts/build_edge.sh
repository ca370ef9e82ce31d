#!/bin/bash
# The binary for small devices: the `edge` profile (optimised for size)
# without the heavy service discoveries (`--no-default-features`), its
# functions linked in the order a running agent executes them and at a
# fixed address, as scripts/build_release.sh links the release binary. An
# idle agent then maps the pages of the code it runs rather than most of
# the binary (the kernel maps code 64 KiB around each page touched), and
# the dynamic linker has no relocations to apply.
#
# `MUSL=1` links it statically against musl, with no C library or dynamic
# linker to map beside it (needs `rustup target add
# x86_64-unknown-linux-musl` and `apt-get install musl-tools`; musl's
# allocator is slower under load, so this is for small devices, not for
# hundreds of thousands of series).
#
# Each variant has its own order (its functions are compiled for it and
# their symbols carry other hashes): pgo/tributary-edge.order or
# pgo/tributary-edge-musl.order, retaken with the command this script
# prints once a change to the code leaves names of it missing. Without
# its order file the binary is built in the compiler's order. No
# profile-guided optimisation: the release build's profile does not fit
# code compiled for size. Extra arguments go to cargo.
#
#   scripts/build_edge.sh
#   MUSL=1 scripts/build_edge.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${MUSL:-0}" = 1 ]; then
  target=(--target x86_64-unknown-linux-musl)
  dir=target/x86_64-unknown-linux-musl/edge
  order=pgo/tributary-edge-musl.order
  # The musl target links with the C compiler's default linker, which has
  # no symbol ordering; Rust's own lld has (`ld.lld` in gcc-ld).
  host=$(rustc -vV | awk '/^host:/ {print $2}')
  linker=(-Clink-arg=-fuse-ld=lld "-Clink-arg=-B$(rustc --print sysroot)/lib/rustlib/$host/bin/gcc-ld")
else
  target=()
  dir=target/edge
  order=pgo/tributary-edge.order
  linker=()
fi
mkdir -p "$dir"
ordering=()
if [ -s "$order" ]; then
  ordering=(-Clink-arg=-Wl,--symbol-ordering-file="$PWD/$order" -Clink-arg=-Wl,--no-warn-symbol-ordering)
fi
cargo rustc --profile edge --locked -p tributary --bin tributary --no-default-features \
  "${target[@]}" "$@" -- "${linker[@]}" "${ordering[@]}" \
  -Clink-arg=-Wl,-Map="$PWD/$dir/tributary.map" -Crelocation-model=static
retake="BIN=$dir/tributary ORDER=$order scripts/layout_train.sh"
if [ ${#ordering[@]} -eq 0 ]; then
  echo "layout: no $order; take it with $retake, then build again"
  exit 0
fi
. scripts/link_order.sh
report_missing "$order" "$dir/tributary.map" "$retake"
