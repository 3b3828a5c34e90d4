#!/usr/bin/env bash
# `make invoke FN=<function> EVENT=<file>`: runs one function in cargo-lambda's Lambda runtime
# emulator against the local stack and prints its response.
set -euo pipefail
fn="${1:?usage: invoke.sh <function> <event file>}"
event="${2:?usage: invoke.sh <function> <event file>}"
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${LAMBDA_EMULATOR_PORT:-9910}"

set -a
# shellcheck disable=SC1091
. "$root/.stack/stack.env"
# shellcheck disable=SC1091
. "$root/tests/local-functions.env"
set +a
export PATH="$root/.venv/bin:$PATH"

"$CARGO_TARGET_DIR/debug/devstack" provision >/dev/null
# Built here, as the emulator would build it, so the invocation's time is not spent compiling.
cargo build -q --bin "$fn"
cargo lambda watch -A 127.0.0.1 -P "$port" --timeout 60 >"$root/.stack/lambda-watch.log" 2>&1 &
watch_pid=$!
trap 'kill "$watch_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.2
done
timeout 600 cargo lambda invoke "$fn" -A 127.0.0.1 -P "$port" --data-file "$event"
echo
