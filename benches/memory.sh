#!/usr/bin/env bash
# Constant memory: peak resident memory of `fleetbench run` at 1,000 streams
# against the zero-delay exact-timing server (fleetbench-fixed-server), from
# 10,000 to 1,000,000 requests. Client and server each pinned to a core when
# there are two. Prints a Markdown table.
#
#   benches/memory.sh [--requests "10000 100000 1000000"] [--streams 1000] [--tokens 20]
#
# Loopback only; writes its databases under a temporary directory it removes.
# BIN_DIR=DIR uses the binaries already built there instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
requests="10000 100000 1000000"
streams=1000
tokens=20
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) requests=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    *) echo "usage: benches/memory.sh [--requests \"N ...\"] [--streams S] [--tokens T]" >&2; exit 2 ;;
  esac
done
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release --locked -p fleetbench -p fleetbench-sim --bin fleetbench --bin fleetbench-fixed-server 2>&1 | tail -n 1
  BIN_DIR=${CARGO_TARGET_DIR:-target}/release
fi
out=$(mktemp -d /tmp/fleetbench-memory.XXXXXX)
pin_client=() pin_server=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_client=(taskset -c 0) pin_server=(taskset -c 1)
fi
"${pin_server[@]}" "$BIN_DIR/fleetbench-fixed-server" --tokens "$tokens" >"$out/server.url" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 50); do [ -s "$out/server.url" ] && break; sleep 0.1; done
url=$(head -n 1 "$out/server.url")
echo "fleetbench run at $streams streams, $tokens tokens per response, against $url ($(date -u +%F), load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| requests | streamed tokens | wall s | client CPU s | CPU µs / token | RSS while running (max of 1 s samples), MB | peak RSS, MB |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for n in $requests; do
  rm -f "$out/m.db"*
  # Python's getrusage of the child: its peak RSS and CPU, whatever the platform's time(1).
  python3 - "$out" "$n" "$tokens" "${pin_client[@]}" "$BIN_DIR/fleetbench" --quiet --db "$out/m.db" run \
    --url "$url" --model fixed --concurrency "$streams" --requests "$n" --workload "synthetic:in=32,out=$tokens" <<'PY'
import resource, subprocess, sys, threading, time
out, n, tokens, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
samples = []
while p.poll() is None:
    try:
        with open(f"/proc/{p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    samples.append(int(line.split()[1]) / 1024)
    except OSError:
        pass
    time.sleep(1)
wall = time.monotonic() - t0
if p.returncode != 0:
    sys.exit(f"fleetbench run exited with {p.returncode}")
r = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = r.ru_utime + r.ru_stime
streamed = n * tokens
running = f"{max(samples):.0f}" if samples else "-"
print(f"| {n:,} | {streamed:,} | {wall:.1f} | {cpu:.1f} | {cpu / streamed * 1e6:.2f} | {running} | {r.ru_maxrss / 1024:.0f} |")
PY
done
