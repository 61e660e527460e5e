#!/bin/sh
# Runs keel's tests: the README's test command, and what CI runs.
# Then it fuzzes the REST API against its OpenAPI document (scripts/fuzz-api.sh).
# It installs what the tests need first: Debian's RISC-V cross compiler and C library (the
# ISA tests are assembled, and the vsock tests' guest program compiled, at test time) and
# OpenSBI (a test boots Linux through it), then fetches the default guest image (the
# end-to-end tests boot Debian's riscv64 kernel).
set -eu
cd "$(dirname "$0")/.."

need=""
command -v riscv64-linux-gnu-gcc >/dev/null 2>&1 || need="$need gcc-riscv64-linux-gnu"
# The vsock tests build a static guest program against the cross C library (only a
# "Recommends" of the compiler, so not installed with it here).
[ -f /usr/riscv64-linux-gnu/lib/libc.a ] || need="$need libc6-dev-riscv64-cross"
[ -f /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin ] || need="$need opensbi"
command -v qemu-img >/dev/null 2>&1 || need="$need qemu-utils"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /sbin/mkfs.ext4 ] || need="$need e2fsprogs"
# The API fuzzing (scripts/fuzz-api.sh): schemathesis from PyPI in a venv, a TCP bridge.
command -v socat >/dev/null 2>&1 || need="$need socat"
command -v curl >/dev/null 2>&1 || need="$need curl"
python3 -c 'import ensurepip' >/dev/null 2>&1 || need="$need python3-venv"
if [ -n "$need" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "test.sh: installing$need" >&2
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi

cargo run --release -q -p keel -- image pull
cargo test --workspace --release "$@"
# Everything above ran guest code on the default engine, the translator (the ISA programs and
# tests/jit.rs run both engines by name). Boot, SMP and snapshot tests again on the
# interpreter: their VMs name no engine, so $KEEL_ACCEL picks it (`keel run` and the managed
# VMs' `keel vmm` both read it; snapshots record it, so restores stay on it). --workspace, as
# above, so the same build serves.
KEEL_ACCEL=interp cargo test --workspace --release --test guest --test smp --test snapshot "$@"
scripts/fuzz-api.sh
