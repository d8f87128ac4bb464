#!/usr/bin/env bash
# Runs every test of fleetbench on a fresh machine: installs and starts what
# the tests need (a real llama.cpp server with a tiny real model, Prometheus,
# Chromium), then runs the whole Rust test suite against them.
#
#   scripts/test.sh [extra cargo test arguments]
#
# Set FLEETBENCH_SKIP_BROWSER=1 or FLEETBENCH_SKIP_PROMETHEUS=1 to leave those
# parts out on a machine without them (CI never does).
set -euo pipefail
cd "$(dirname "$0")/.."
export FLEETBENCH_CACHE=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "== starting the tiny llama.cpp server (SmolLM2-135M) on port $port"
FLEETBENCH_TINY_URL=$(scripts/tiny-server.sh --port "$port" --parallel 4 --background)
export FLEETBENCH_TINY_URL FLEETBENCH_REQUIRE_TINY=1
FLEETBENCH_TINY_SLOTS=4
export FLEETBENCH_TINY_SLOTS
cleanup() { kill "$(cat "$FLEETBENCH_CACHE/tiny/server-$port.pid")" 2>/dev/null || true; }
trap cleanup EXIT

if [ "${FLEETBENCH_SKIP_PROMETHEUS:-0}" != 1 ] && [ -x scripts/ensure-prometheus.sh ]; then
  echo "== Prometheus: $(scripts/ensure-prometheus.sh)"
fi
if [ "${FLEETBENCH_SKIP_BROWSER:-0}" != 1 ] && [ -x scripts/ensure-chromium.sh ]; then
  echo "== Chromium: $(scripts/ensure-chromium.sh)"
fi

echo "== cargo test --workspace"
cargo test --workspace --locked "$@"
