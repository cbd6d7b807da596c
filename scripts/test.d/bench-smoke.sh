#!/usr/bin/env bash
# Smoke run of the benchmark: proves `scripts/bench.sh --quick` works end to end (every
# runtime, every phase, cleanup). Asserts no timing: the machine is shared and noisy.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
bash scripts/bench.sh --quick | tee "$out"
for row in '`run` /bin/true, minimal bundle' '`run` /bin/true, Docker-like bundle' \
  'peak RSS of `run`' '`create`' '`start`' '`delete`' 'sequential' 'concurrent' \
  'seccomp compile' 'binary size' 'round 1' 'both cores busy' '`exec` /bin/true' \
  'scale: `create` with' 'scale: `list`' 'created, not started' '- floor:'; do
  grep -qF -- "$row" "$out" || { echo "bench-smoke: row missing: $row"; exit 1; }
done
# casulo's column must hold a number on every row
if awk -F'|' '/^\| [^-m]/ && $4 !~ /[0-9]/ {bad=1} END {exit !bad}' "$out"; then
  echo "bench-smoke: casulo has no value on some row"; exit 1
fi
if ls -d /sys/fs/cgroup/*/casulo-bench-* /run/casulo-bench-* >/dev/null 2>&1; then
  echo "bench-smoke: cgroups or state directories left behind"; exit 1
fi
# nothing may land in the host's /sys/fs/cgroup tmpfs under the cgroup2 mount (looked at
# from a private mount namespace, where that mount can be taken away)
if unshare -m --propagation private sh -c \
  'umount /sys/fs/cgroup/unified 2>/dev/null && ls -d /sys/fs/cgroup/unified/casulo-bench-*' >/dev/null 2>&1; then
  echo "bench-smoke: files left under the host's /sys/fs/cgroup/unified mount point"; exit 1
fi
echo "bench-smoke: ok"
