#!/usr/bin/env bash
# The cgroup suites in a pure cgroup v2 VM (the host here is hybrid): builds the test
# binaries on the host, boots scripts/v2vm/run-in-v2vm.sh with the repository and the
# target dir shared, and runs casulo-core's `cgroups_real` and the integration
# `cgroups_e2e`, `faults`, `force_delete` and `rootless` (a delegated v2 subtree of the
# test's unprivileged user) binaries inside. Fails if any fails (or the VM does).
# Needs root and .ci/packages.d/v2vm. Usage: bash scripts/test.d/v2vm.sh
# Env: V2VM_TIMEOUT (seconds, default 600), V2VM_CACHE (kernel cache, see the runner).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
start=$(date +%s)

# Host side: the runtime, the static checker the bundles copy in, and the test binaries.
# the shipped static binary (`cargo dist`) and the checker, built the same way
CARGO_TARGET_DIR="$target" cargo dist -q
CARGO_TARGET_DIR="$target" cargo static-release -q --bin casulo-checker
bins=$(cargo test -q --no-run --message-format=json -p casulo-core -p casulo-integration \
         --test cgroups_real --test cgroups_e2e --test faults --test force_delete --test rootless 2>/dev/null \
       | jq -r 'select(.reason == "compiler-artifact" and .executable != null
                       and (.target.name == "cgroups_real" or .target.name == "cgroups_e2e"
                            or .target.name == "faults" or .target.name == "force_delete"
                            or .target.name == "rootless"))
                | .executable')
real=$(grep '/cgroups_real-' <<<"$bins" | head -1)
e2e=$(grep '/cgroups_e2e-' <<<"$bins" | head -1)
faults=$(grep '/faults-' <<<"$bins" | head -1)
fdel=$(grep '/force_delete-' <<<"$bins" | head -1)
rootless=$(grep '/rootless-' <<<"$bins" | head -1)
[ -x "$real" ] && [ -x "$e2e" ] && [ -x "$faults" ] && [ -x "$fdel" ] && [ -x "$rootless" ] \
  || { echo "v2vm: test binaries not found: $bins" >&2; exit 1; }
echo "v2vm: built in $(( $(date +%s) - start ))s: $real $e2e $faults $fdel"

shares=(-s "$repo")
case $target/ in "$repo"/*) ;; *) shares+=(-s "$target") ;; esac
vm_start=$(date +%s)
set +e
bash scripts/v2vm/run-in-v2vm.sh "${shares[@]}" -w "$repo" -t "${V2VM_TIMEOUT:-600}" \
  -e CASULO_BIN="$target/x86_64-unknown-linux-gnu/release/casulo" \
  -e CASULO_CHECKER="$target/x86_64-unknown-linux-gnu/release/casulo-checker" \
  -e RUST_BACKTRACE=1 \
  -- sh -c '
    grep -q " - cgroup2 " /proc/self/mountinfo && ! grep -q " - cgroup " /proc/self/mountinfo \
      || { echo "v2vm: not a pure cgroup v2 VM"; exit 1; }
    rc=0
    echo "== cgroups_real (pure cgroup v2)"; "$0" --test-threads=2 || rc=1
    echo "== cgroups_e2e (pure cgroup v2)"; "$1" --test-threads=2 || rc=1
    echo "== faults (pure cgroup v2)"; "$2" --test-threads=2 || rc=1
    echo "== force_delete (pure cgroup v2)"; "$3" --test-threads=1 || rc=1
    echo "== rootless (pure cgroup v2)"; "$4" --test-threads=2 || rc=1
    exit $rc' "$real" "$e2e" "$faults" "$fdel" "$rootless" 2>&1 | tr -d '\r' | grep -v -E '^(\[ *[0-9]+\.[0-9]+\] |V2VM_EXIT_CODE_)'
rc=${PIPESTATUS[0]}
set -e
echo "v2vm: VM step took $(( $(date +%s) - vm_start ))s, exit status $rc"
exit "$rc"
