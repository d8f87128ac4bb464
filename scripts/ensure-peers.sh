#!/usr/bin/env bash
# Installs (once) a peer client the simulator's streaming tests compare
# fleetbench with, from PyPI into a virtual environment under the cache, and
# prints what the tests run. Nothing is started.
#
#   scripts/ensure-peers.sh            the openai Python SDK (and its HTTP client);
#                                      prints the environment's python3
#   scripts/ensure-peers.sh guidellm   GuideLLM 0.8.1; prints its `guidellm` command
#
# GuideLLM has a virtual environment of its own: it needs torch (from PyPI, the
# CUDA build with its nvidia-* libraries: 5.9 GiB installed, under two
# minutes the first time), which the openai SDK's small environment should not
# carry, and its dependencies are pinned to a set known to work
# (scripts/py/guidellm-constraints.txt) so that a new release of one of them
# cannot break it. It needs no tokenizer from Hugging Face when its prompts
# come from a file, as the test gives them.
set -euo pipefail
cache=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}/peers
case "${1:-openai}" in
  openai)
    venv=$cache/venv
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
    ;;
  guidellm)
    venv=$cache/guidellm
    version=0.8.1
    constraints=$(cd "$(dirname "$0")" && pwd)/py/guidellm-constraints.txt
    if ! [ -x "$venv/bin/guidellm" ] ||
       ! "$venv/bin/python3" -c "import importlib.metadata as m, sys
sys.exit(m.version('guidellm') != '$version')" 2>/dev/null; then
      echo "installing GuideLLM $version into $venv (5.9 GiB with torch; once)" >&2
      python3 -m venv "$venv" >&2
      # --no-cache-dir: the wheels (about 3 GB) are not kept a second time.
      "$venv/bin/pip" install -q --no-cache-dir --disable-pip-version-check -c "$constraints" "guidellm==$version" >&2
    fi
    echo "$venv/bin/guidellm"
    ;;
  *)
    echo "usage: scripts/ensure-peers.sh [openai|guidellm]" >&2
    exit 2
    ;;
esac
