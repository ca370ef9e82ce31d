#!/bin/bash
# The release binary as it is measured and shipped: target/release/tributary
# built with profile-guided optimisation from pgo/tributary.profdata.gz (the
# counts of a bench-like run, see scripts/pgo_train.sh). Extra arguments go
# to cargo (e.g. --features ...). A plain `cargo build --release` builds the
# same program without the profile.
#
#   scripts/build_release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/pgo
gzip -dc pgo/tributary.profdata.gz >target/pgo/tributary.profdata
# Functions changed since the profile was taken are built without it; the
# mismatch warnings would name each one.
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PWD/target/pgo/tributary.profdata -Cllvm-args=-no-pgo-warn-mismatch" \
  cargo build --release --locked -p tributary "$@"
