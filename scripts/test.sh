#!/bin/sh
# Runs keel's tests: the README's test command, and what CI runs.
# It installs what the tests need first: Debian's RISC-V cross compiler (the ISA tests are
# assembled at test time) and OpenSBI (a test boots Linux through it), then fetches the default
# guest image (the end-to-end tests boot Debian's riscv64 kernel).
set -eu
cd "$(dirname "$0")/.."

need=""
command -v riscv64-linux-gnu-gcc >/dev/null 2>&1 || need="$need gcc-riscv64-linux-gnu"
[ -f /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin ] || need="$need opensbi"
if [ -n "$need" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "test.sh: installing$need" >&2
    $sudo apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
fi

cargo run --release -q -p keel -- image pull
cargo test --workspace --release "$@"
