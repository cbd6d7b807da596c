#!/usr/bin/env bash
# The benchmark (docs/performance.md): casulo (release build) against crun and runc,
# interleaved on the same bundles; prints medians and ratios to crun as a Markdown table.
# Needs root, busybox-static, crun and runc. Usage: bash scripts/bench.sh [--quick]
# --quick: a few iterations only (CI smoke run; the numbers mean nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
# casulo as shipped: `cargo dist` (static-pie, .cargo/config.toml); the bench itself is a
# plain release build.
cargo dist --quiet
cargo build --release --quiet -p casulo-integration --bin casulo-bench
exec "$CARGO_TARGET_DIR/release/casulo-bench" \
  --casulo "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/casulo" "$@"
