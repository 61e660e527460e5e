#!/bin/sh
# Property-based fuzzing of keel's REST API with schemathesis (from PyPI, in a venv), driven
# by crates/api/openapi.yaml: first every route against the mock VMM (the server code with a
# stand-in VM), then a real VM's API (a Debian guest running in its own VMM process), minus
# /actions, whose Stop and SendCtrlAltDel would end the VM mid-run, /snapshot/create,
# which would write snapshots wherever the fuzzer points, and /migrate, which would connect
# to whatever address the fuzzer makes up (the mock covers all three). Fails on any
# 5xx, and if a server stops answering.
set -eu
cd "$(dirname "$0")/.."
keel="${CARGO_TARGET_DIR:-target}/release/keel"
KEEL_STATE_DIR="$(mktemp -d)"
export KEEL_STATE_DIR
trap '"$keel" stop fuzz --force >/dev/null 2>&1 || true; rm -rf "$KEEL_STATE_DIR"' EXIT

crates/api/tests/fuzz.sh

cargo build --release -q -p keel
cat >"$KEEL_STATE_DIR/fuzz.toml" <<VM
[balloon]
target = 0
stats_interval = 1
VM
"$keel" create fuzz "$KEEL_STATE_DIR/fuzz.toml"
"$keel" start fuzz
FUZZ_EXCLUDE_PATHS="/actions /snapshot/create /migrate" crates/api/tests/fuzz.sh "$KEEL_STATE_DIR/vms/fuzz/api.sock"
state="$("$keel" ls | awk '$1 == "fuzz" { print $2 }')"
case "$state" in
running | paused) echo "fuzz-api.sh: the real VM survived the fuzzing ($state)" ;;
*) echo "fuzz-api.sh: FAIL: the real VM is $state after the fuzzing" >&2; exit 1 ;;
esac
