#!/usr/bin/env bash
# The binary as shipped (`cargo dist`, .cargo/config.toml): checks that it is a stripped
# static-pie executable within issue 8's 3 MiB, then runs the lifecycle, container, CVE
# and engine suites against it (the rest of the suite uses the debug build).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
CARGO_TARGET_DIR="$target" cargo dist -q
bin=$target/x86_64-unknown-linux-gnu/release/casulo
fail() { echo "release-binary: $*"; exit 1; }

hdr=$(readelf -lhd "$bin")
grep -q 'Type: *DYN' <<<"$hdr" || fail "not position-independent"
! grep -q 'INTERP' <<<"$hdr" || fail "has a program interpreter (dynamically linked)"
! grep -q '(NEEDED)' <<<"$hdr" || fail "needs shared libraries: $(grep '(NEEDED)' <<<"$hdr")"
grep -q '(RELR)' <<<"$hdr" || fail "no packed relative relocations (DT_RELR)"
[ -z "$(readelf -S "$bin" | grep -E '\.symtab|\.debug_')" ] || fail "not stripped"
size=$(stat -c %s "$bin")
echo "release-binary: $bin: static-pie, $size bytes ($(awk "BEGIN{printf \"%.2f\", $size/1048576}") MiB)"
[ "$size" -le $((3 * 1024 * 1024)) ] || fail "larger than 3 MiB (issue 8)"
"$bin" --version

CASULO_BIN=$bin CARGO_TARGET_DIR="$target" cargo test -q -p casulo-integration \
  --test lifecycle --test container --test cve --test cve_exe --test exec --test seccomp \
  --test cli_output --test force_delete \
  --test engines_containerd --test engines_podman --test engines_docker
echo "release-binary: ok"
