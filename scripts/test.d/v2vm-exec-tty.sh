#!/usr/bin/env bash
# exec and terminal tests again on a pure cgroup v2 kernel (CLONE_INTO_CGROUP, nsdelegate),
# in the throwaway VM of shared/tools/run-in-v2vm.sh. Skipped when qemu or the tool is
# missing. Runs after `cargo test` (which built the binaries and the static checker).
set -euo pipefail
cd "$(dirname "$0")/../.."
tool=../shared/tools/run-in-v2vm.sh
if [ ! -f "$tool" ] || ! command -v qemu-system-x86_64 >/dev/null; then
  echo "skipped: no qemu-system-x86_64 or $tool"
  exit 0
fi
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q -p casulo
bins=$(cargo test -p casulo-integration --test exec --test tty --no-run 2>&1 |
  sed -n 's/.*Executable tests\/\(exec\|tty\)\.rs (\(.*\))/\2/p')
[ -n "$bins" ] || { echo "v2vm exec/tty: test binaries not found" >&2; exit 1; }
checker=$target/x86_64-unknown-linux-gnu/release/casulo-checker
[ -f "$checker" ] || { echo "skipped: $checker not built (run cargo test first)"; exit 0; }
cmd=""
for b in $bins; do
  case "$b" in /*) ;; *) b=$PWD/$b ;; esac
  cmd="$cmd $b --test-threads 2 &&"
done
bash "$tool" -r "$PWD" -r "$target" -e CASULO_BIN="$target/debug/casulo" \
  -e CASULO_CHECKER="$checker" -t 600 -- sh -c "$cmd true" 2>&1 |
  grep -E '^test |^test result|panicked|V2VM_EXIT' | tee /tmp/casulo-v2vm-exec-tty.log
grep -q 'V2VM_EXIT_CODE_[0-9a-f]*=0' /tmp/casulo-v2vm-exec-tty.log
