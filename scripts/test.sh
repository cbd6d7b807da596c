#!/usr/bin/env bash
# The whole test suite: formatting and lints, every crate's tests (unit, real
# containers, engines), then the extra suites in scripts/test.d/ (e.g. the cgroup v2 VM).
# Needs root. Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Test cgroups left behind are a failure: every suite removes what it made.
leftover_cgroups() { ls -d /sys/fs/cgroup/casulo-* /sys/fs/cgroup/*/casulo-* 2>/dev/null | sort || true; }
before=$(leftover_cgroups)
# Every skipped test appends "<test>: <reason>" here (integration/src/prereq.rs); the
# count is printed at the end. Under CI=true a missing prerequisite fails instead.
export CASULO_SKIP_LOG=/tmp/casulo-skips-$$.log
: > "$CASULO_SKIP_LOG"
report_skips() {
  echo "skipped tests: $(wc -l < "$CASULO_SKIP_LOG")"
  sed 's/^/  /' "$CASULO_SKIP_LOG"
  rm -f "$CASULO_SKIP_LOG"
}
trap report_skips EXIT
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The library's public API: every item documented, no broken doc links (issue 18).
RUSTDOCFLAGS="-D warnings" cargo doc -p casulo-core --no-deps -q
cargo test --workspace --no-fail-fast 2>&1 | tee /tmp/casulo-test.log
for t in scripts/test.d/*.sh; do
  [ -e "$t" ] || continue
  echo "== $t"
  bash "$t"
done
left=$(comm -13 <(echo "$before") <(leftover_cgroups))
if [ -n "$left" ]; then
  echo "test.sh: the tests left cgroups behind:"; echo "$left"; exit 1
fi
