#!/usr/bin/env bash
# The cgroup suites in the pure cgroup v2 VM with systemd as PID 1 (run-in-v2vm.sh -S).
#  (a) cgroupfs driver under systemd: the v2 VM suites (casulo-core `cgroups_real`, and
#      integration `cgroups_e2e`, `faults`, `force_delete`, `exec`, `tty`) in a transient
#      scope with Delegate=yes: the runner moves itself into a leaf of the scope and the
#      tests put their cgroups under it (CASULO_TEST_CGROUP_BASE), not next to systemd's.
#      faults' hundred_concurrent_creates_of_distinct_ids is left out here (about 4 min
#      under TCG; scripts/test.d/v2vm.sh runs it in the plain v2 VM).
#  (b) systemd driver (`--systemd-cgroup`): the tests of SYSTEMD_SUITES, run as root in
#      the VM's command service (the driver makes its own scopes over D-Bus), and
#      integration `engines_systemd` (containerd, dockerd, podman with their systemd
#      drivers) and `engines_cri`'s cri_pods_casulo_systemd (containerd's CRI with
#      SystemdCgroup = true) with casulo; `systemd_rootless` runs casulo as the
#      unprivileged user against that user's own systemd instance (user@UID.service).
#      Only when the built casulo's `features` says linux.cgroup.systemd is true;
#      otherwise (b) is skipped and says why.
#      `engines_systemd` alone with another runtime, e.g. to check the harness:
#      V2VM_ENGINE_RUNTIME=/usr/sbin/runc bash scripts/test.d/v2vm-systemd.sh
# Fails if any suite fails (or the VM does). Needs root, .ci/packages.d/v2vm and systemd.
# Usage: bash scripts/test.d/v2vm-systemd.sh
# Env: V2VM_TIMEOUT (seconds, default 900), V2VM_CACHE (kernel cache, see the runner),
#      SYSTEMD_SUITES (override the list below: "binary:filter ..."; an empty filter runs
#      all of the binary), CGFS_SUITES (override (a)'s list; empty: no (a)),
#      V2VM_ENGINE_RUNTIME (see above: runs only engines_systemd).
# E.g. only the CRI pods with SystemdCgroup = true:
#      CGFS_SUITES= SYSTEMD_SUITES=engines_cri:systemd bash scripts/test.d/v2vm-systemd.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
start=$(date +%s)

# (b): "test-binary:libtest-name-filter" pairs for the systemd driver. A filter selects the
# tests of that binary that use --systemd-cgroup (the systemd driver's tests are named
# systemd_*); an empty one runs the whole binary (systemd_driver, engines_systemd);
# engines_cri:systemd is the CRI pod lifecycle with SystemdCgroup = true.
SYSTEMD_SUITES=${SYSTEMD_SUITES-"systemd_driver: systemd_rootless: cgroups_e2e:systemd engines_systemd: engines_cri:systemd"}
# (a): the cgroupfs driver's suites.
CGFS_SUITES=${CGFS_SUITES-"cgroups_real cgroups_e2e faults force_delete exec tty"}

CARGO_TARGET_DIR="$target" cargo dist -q
CARGO_TARGET_DIR="$target" cargo static-release -q --bin casulo-checker --bin casulo-pause
casulo=$target/x86_64-unknown-linux-gnu/release/casulo
checker=$target/x86_64-unknown-linux-gnu/release/casulo-checker
pause=$target/x86_64-unknown-linux-gnu/release/casulo-pause  # engines_cri's pause image
names=$CGFS_SUITES
sd=0 engine_rt=${V2VM_ENGINE_RUNTIME:-}
if [ -n "$engine_rt" ]; then
  names="engines_systemd" SYSTEMD_SUITES="engines_systemd:" CGFS_SUITES=""
  sd=1
  echo "v2vm-systemd: only engines_systemd, with $engine_rt as the engines' runtime"
elif [ "$("$casulo" features | jq -r '.linux.cgroup.systemd // false')" = true ]; then
  sd=1
  for s in $SYSTEMD_SUITES; do names="$names ${s%%:*}"; done
else
  echo "v2vm-systemd: (b) skipped: this casulo has no systemd cgroup driver (features: linux.cgroup.systemd is not true)"
fi
names=$(tr ' ' '\n' <<<"$names" | sort -u | xargs)
args=() sel=""
for n in $names; do
  args+=(--test "$n")
  sel="$sel${sel:+ or }.target.name == \"$n\""
done
bins=$(cargo test -q --no-run --message-format=json -p casulo-core -p casulo-integration "${args[@]}" \
         2>/dev/null | jq -r "select(.reason == \"compiler-artifact\" and .executable != null
                                     and ($sel)) | .executable")
bin() {  # the test binary named $1
  local b; b=$(grep "/$1-[0-9a-f]*\$" <<<"$bins" | head -1)
  [ -x "$b" ] || { echo "v2vm-systemd: test binary $1 not found in: $bins" >&2; exit 1; }
  echo "$b"
}
cgfs="" sdlist=""
if [ -z "$engine_rt" ]; then
  for n in $CGFS_SUITES; do cgfs="$cgfs $n=$(bin "$n")"; done
fi
if [ "$sd" = 1 ]; then
  for s in $SYSTEMD_SUITES; do sdlist="$sdlist $(bin "${s%%:*}"):${s#*:}"; done
fi
echo "v2vm-systemd: built in $(( $(date +%s) - start ))s"

shares=(-s "$repo")
case $target/ in "$repo"/*) ;; *) shares+=(-s "$target") ;; esac
vm_start=$(date +%s)
set +e
bash scripts/v2vm/run-in-v2vm.sh -S "${shares[@]}" -w "$repo" -t "${V2VM_TIMEOUT:-900}" \
  -e CASULO_BIN="$casulo" -e CASULO_CHECKER="$checker" -e CASULO_PAUSE="$pause" \
  -e RUST_BACKTRACE=1 -e CI="${CI:-}" \
  -e CASULO_ENGINE_RUNTIME="$engine_rt" \
  -e CGFS="${cgfs# }" -e SDLIST="${sdlist# }" \
  -- sh scripts/v2vm/systemd-suites.sh 2>&1 \
  | tr -d '\r' | grep -v -E '^(\[ *[0-9]+\.[0-9]+\] |V2VM_EXIT_CODE_)'
rc=${PIPESTATUS[0]}
set -e
echo "v2vm-systemd: VM step took $(( $(date +%s) - vm_start ))s, exit status $rc"
exit "$rc"
