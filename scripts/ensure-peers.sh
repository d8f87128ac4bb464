#!/usr/bin/env bash
# Installs (once) the peer client the simulator's streaming test compares
# fleetbench with: the openai Python SDK (and its HTTP client), from PyPI into a
# virtual environment under the cache. Prints the environment's python3.
# Nothing is started.
#
#   scripts/ensure-peers.sh
set -euo pipefail
venv=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}/peers/venv
if ! "$venv/bin/python3" -c 'import openai
try:
    import httpx2
except ImportError:
    import httpx' 2>/dev/null; then
  echo "installing the openai Python SDK into $venv" >&2
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check openai==3.57.0 >&2
fi
echo "$venv/bin/python3"
