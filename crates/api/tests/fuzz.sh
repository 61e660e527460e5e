#!/usr/bin/env bash
# Fuzzes the VMM API with schemathesis, driven by crates/api/openapi.yaml. Not run by
# `cargo test`: it needs PyPI (schemathesis, installed into a venv) and socat.
#
#   crates/api/tests/fuzz.sh            # build the mock_vmm example and fuzz it
#   crates/api/tests/fuzz.sh SOCKET     # fuzz a running VMM's api.sock (it WILL be stopped,
#                                       # reset and paused: use a throwaway VM)
#
# Environment: FUZZ_EXAMPLES (test cases per operation, default 200), FUZZ_PORT (loopback TCP
# port of the socat bridge, default 18555), ST_VENV (default /tmp/keel-st-venv),
# FUZZ_EXCLUDE_PATHS (space-separated paths not to fuzz, e.g. "/actions" for a real VM
# that must stay up), FUZZ_ALL_CHECKS=1 (also run schemathesis's conformance checks, report only: they count the
# contract's wrong-state 400s as "valid data rejected").
#
# Fails if any response is a 5xx, or if the server has stopped answering afterwards.
# /console is left out of the fuzzing (a 101 turns the connection into a raw byte stream,
# which an HTTP fuzzer cannot speak); its refusal without the upgrade headers is checked.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
crate="$(dirname "$here")"
doc="$crate/openapi.yaml"
examples="${FUZZ_EXAMPLES:-200}"
port="${FUZZ_PORT:-18555}"
venv="${ST_VENV:-/tmp/keel-st-venv}"

command -v socat >/dev/null || { echo "fuzz.sh: needs socat (apt-get install socat)" >&2; exit 2; }
if [ ! -x "$venv/bin/st" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis
fi

tmp="$(mktemp -d)"
pids=()
cleanup() {
    exec 3>&- 2>/dev/null || true
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

mock_pid=""
if [ $# -ge 1 ]; then
    sock="$1"
else
    (cd "$crate" && cargo build --quiet -p keel-api --example mock_vmm)
    target="$(cd "$crate" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    sock="$tmp/api.sock"
    # mock_vmm serves until its stdin closes: hold a fifo open on fd 3 for as long as we run.
    mkfifo "$tmp/stdin"
    "$target/debug/examples/mock_vmm" "$sock" <"$tmp/stdin" 2>"$tmp/mock.log" &
    mock_pid=$!
    pids+=("$mock_pid")
    exec 3>"$tmp/stdin"
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
fi
[ -S "$sock" ] || { echo "fuzz.sh: no API socket at $sock" >&2; exit 2; }

socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$sock" 2>/dev/null &
pids+=("$!")
for _ in $(seq 100); do (exec 4<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

excludes=(--exclude-path /console)
for p in ${FUZZ_EXCLUDE_PATHS:-}; do excludes+=(--exclude-path "$p"); done
checks=not_a_server_error
[ "${FUZZ_ALL_CHECKS:-0}" = 1 ] && checks=all
status=0
# Run from the temp dir so that hypothesis's example database lands there.
(cd "$tmp" && "$venv/bin/st" run "$doc" --url "http://127.0.0.1:$port" \
    --checks "$checks" "${excludes[@]}" \
    --phases examples,coverage,fuzzing --max-examples "$examples" --workers 4) || status=$?

alive() { curl -sf --max-time 5 --unix-socket "$sock" http://localhost/ >/dev/null; }
if ! alive; then
    echo "fuzz.sh: FAIL: the server no longer answers GET /" >&2
    status=1
fi
if [ -n "$mock_pid" ] && ! kill -0 "$mock_pid" 2>/dev/null; then
    echo "fuzz.sh: FAIL: mock_vmm died; its log:" >&2
    cat "$tmp/mock.log" >&2
    status=1
fi
console="$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' --unix-socket "$sock" \
    http://localhost/console || true)"
if [ "$console" != 400 ]; then
    echo "fuzz.sh: FAIL: GET /console without upgrade headers answered $console, not 400" >&2
    status=1
fi
[ "$status" = 0 ] && echo "fuzz.sh: no server errors, server alive"
exit "$status"
