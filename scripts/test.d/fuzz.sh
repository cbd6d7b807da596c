#!/usr/bin/env bash
# The structured fuzzer (integration/src/bin/casulo-fuzz.rs) on each target for
# FUZZ_SECONDS (default 50) s from the corpus in integration/fuzz/corpus/<target>/.
# Fails on any panic (the input is saved there as crash-<hash>.json) and on an error
# that is not one line naming a field.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-50}
cargo build -q --release -p casulo-integration --bin casulo-fuzz
bin=${CARGO_TARGET_DIR:-target}/release/casulo-fuzz
for t in config seccomp; do
  "$bin" "$t" --corpus "integration/fuzz/corpus/$t" --seconds "$secs"
done
echo "fuzz: ok"
