#!/bin/sh
# The in-VM half of scripts/test.d/v2vm-systemd.sh (run by `run-in-v2vm.sh -S`):
#   CGFS="name=/path/to/test-binary ..."   suites for the cgroupfs driver, run in a transient
#                                          scope with Delegate=yes (cgroups under the scope)
#   SDLIST="/path/to/test-binary:filter ..." suites for the systemd driver (--systemd-cgroup)
#                                          and engines_systemd, run as root in the command
#                                          service (an empty filter runs the whole binary)
# Exit status 0 only if every suite passed and no casulo cgroup or unit is left behind.
set -u
[ "$(cat /proc/1/comm)" = systemd ] || { echo "systemd-suites: PID 1 is not systemd"; exit 1; }
grep -q " - cgroup2 " /proc/self/mountinfo && ! grep -q " - cgroup " /proc/self/mountinfo \
  || { echo "systemd-suites: not a pure cgroup v2 VM"; exit 1; }
busctl --system status org.freedesktop.systemd1 >/dev/null \
  || { echo "systemd-suites: systemd is not on the system bus"; exit 1; }

if [ "${1:-}" = in-scope ]; then
  # In the delegated scope: move out of its cgroup into a leaf (no internal processes),
  # enable the delegated controllers for the tests' cgroups, and put them under the scope.
  cg=$(sed -n 's/^0:://p' /proc/self/cgroup)
  mkdir "/sys/fs/cgroup$cg/runner" && echo $$ > "/sys/fs/cgroup$cg/runner/cgroup.procs" || exit 1
  for c in $(cat "/sys/fs/cgroup$cg/cgroup.controllers"); do
    echo "+$c" > "/sys/fs/cgroup$cg/cgroup.subtree_control" || exit 1
  done
  echo "systemd-suites: delegated $cg with controllers: $(cat "/sys/fs/cgroup$cg/cgroup.subtree_control")"
  export CASULO_TEST_CGROUP_BASE="$cg"
  rc=0
  for nb in $CGFS; do
    n=${nb%%=*} b=${nb#*=} threads=2 skip=""
    [ "$n" = force_delete ] && threads=1
    [ "$n" = faults ] && skip="--skip hundred_concurrent_creates_of_distinct_ids"
    echo "== $n (cgroupfs driver under systemd, in $cg)"
    # shellcheck disable=SC2086
    "$b" --test-threads=$threads $skip || rc=1
  done
  left=$(find "/sys/fs/cgroup$cg" -mindepth 1 -type d ! -path "*/runner")
  [ -z "$left" ] || { echo "systemd-suites: cgroups left in the scope: $left"; rc=1; }
  exit $rc
fi

rc=0
export CASULO_EXPECT_SYSTEMD=1   # the systemd driver's tests fail instead of skipping
[ -z "$CGFS" ] || systemd-run --quiet --scope -p Delegate=yes --unit="casulo-cgfs-$$" -- sh "$0" in-scope || rc=1
for e in $SDLIST; do
  b=${e%:*} f=${e##*:}
  echo "== ${b##*/} ${f:-(all)} (systemd driver)"
  out=$("$b" --test-threads=2 ${f:+"$f"} 2>&1) || rc=1
  printf '%s\n' "$out"
  # A filter that selects nothing would pass without testing anything.
  if printf '%s\n' "$out" | grep -q '^test result: ok\. 0 passed'; then
    echo "systemd-suites: ${b##*/} ${f:-(all)} ran no test"; rc=1
  fi
done
# Slices stay (systemd keeps them, as with runc); scopes, services and cgroups may not.
left=$(find /sys/fs/cgroup -name '*casulo*' -type d ! -name '*.slice')
[ -z "$left" ] || { echo "systemd-suites: cgroups left: $left"; rc=1; }
units=$(systemctl list-units --all --plain --no-legend --no-pager '*casulo*' | grep -v '\.slice ')
[ -z "$units" ] || { echo "systemd-suites: units left: $units"; rc=1; }
exit $rc
