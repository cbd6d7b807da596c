#!/usr/bin/env bash
# Builds casulo, prepares a busybox rootfs in a temporary bundle and runs one container
# that prints what it sees. Needs root and busybox-static (apt-get install busybox-static).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo dist -q   # the release binary as shipped (.cargo/config.toml)
bin=${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-linux-gnu/release/casulo
bundle=$(mktemp -d /tmp/casulo-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle"/rootfs/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$bundle/rootfs/bin/"
for a in sh echo cat id hostname ls mount head; do ln -s busybox "$bundle/rootfs/bin/$a"; done
cd "$bundle"
"$bin" spec
sed -i 's|"sh"$|"sh", "-c", "echo hello from the container $(hostname), pid $$; id; head -3 /proc/self/status"|' config.json
"$bin" --root "$bundle/state" run "demo-$$"
