#!/usr/bin/env bash
# exec and terminal suites again in the pure cgroup v2 VM (CLONE_INTO_CGROUP, nsdelegate):
# builds the test binaries on the host and runs integration's `exec` and `tty` inside
# scripts/v2vm/run-in-v2vm.sh. Fails if either fails (or the VM does).
# Needs root and .ci/packages.d/v2vm. Usage: bash scripts/test.d/v2vm-exec-tty.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
# the shipped static binary (`cargo dist`) and the checker, built the same way
CARGO_TARGET_DIR="$target" cargo dist -q
CARGO_TARGET_DIR="$target" cargo static-release -q --bin casulo-checker
bins=$(cargo test -q --no-run --message-format=json -p casulo-integration \
         --test exec --test tty 2>/dev/null \
       | jq -r 'select(.reason == "compiler-artifact" and .executable != null
                       and (.target.name == "exec" or .target.name == "tty"))
                | .executable')
exec_bin=$(grep '/exec-' <<<"$bins" | head -1)
tty_bin=$(grep '/tty-' <<<"$bins" | head -1)
[ -x "$exec_bin" ] && [ -x "$tty_bin" ] || { echo "v2vm-exec-tty: test binaries not found: $bins" >&2; exit 1; }
shares=(-s "$repo")
case $target/ in "$repo"/*) ;; *) shares+=(-s "$target") ;; esac
set +e
bash scripts/v2vm/run-in-v2vm.sh "${shares[@]}" -w "$repo" -t "${V2VM_TIMEOUT:-600}" \
  -e CASULO_BIN="$target/x86_64-unknown-linux-gnu/release/casulo" \
  -e CASULO_CHECKER="$target/x86_64-unknown-linux-gnu/release/casulo-checker" \
  -- sh -c '
    rc=0
    echo "== exec (pure cgroup v2)"; "$0" --test-threads=2 || rc=1
    echo "== tty (pure cgroup v2)"; "$1" --test-threads=2 || rc=1
    exit $rc' "$exec_bin" "$tty_bin" 2>&1 | tr -d '\r' | grep -v -E '^(\[ *[0-9]+\.[0-9]+\] |V2VM_EXIT_CODE_)'
rc=${PIPESTATUS[0]}
set -e
echo "v2vm-exec-tty: exit status $rc"
exit "$rc"
