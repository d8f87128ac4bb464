#!/usr/bin/env bash
# A soak: many streams against a local server that injects every fault kind
# in turn (HTTP 500, 429 with Retry-After, malformed JSON, a stream cut
# without [DONE], invalid UTF-8, an error event, a stall, an awkward but
# valid stream), for N minutes; then checks that fleetbench did not crash,
# accounted for every request by kind, kept its memory flat, and left an
# intact database.
#
#   scripts/soak.sh [--minutes N] [--streams S]      (default 30 minutes, 1000 streams)
#
# Loopback only; stops by itself. Not part of CI's time budget.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=30
streams=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    *) echo "usage: scripts/soak.sh [--minutes N] [--streams S]" >&2; exit 2 ;;
  esac
done
out=${SOAK_DIR:-$(mktemp -d /tmp/fleetbench-soak.XXXXXX)}
mkdir -p "$out"
echo "== building release binaries"
cargo build --release --locked -p fleetbench -p fleetbench-testkit --bin fleetbench --bin fleetbench-testserver 2>&1 | tail -n 1
target=${CARGO_TARGET_DIR:-target}
"$target/release/fleetbench-testserver" --fault mixed --ttft-ms 50 --itl-ms 20 --tokens 40 >"$out/server.url" 2>"$out/server.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$out/server.url" ] && break; sleep 0.1; done
url=$(head -n 1 "$out/server.url")
echo "== soak: $streams streams for $minutes min against $url (every fault kind in turn); results in $out"
"$target/release/fleetbench" --quiet --db "$out/soak.db" run --url "$url" --model soak \
  --concurrency "$streams" --duration "${minutes}m" --timeout-idle 2s --timeout-total 60s --retry-429 2 \
  --workload synthetic:in=64,out=40 --json-out "$out/soak.json" >"$out/run.log" 2>&1 &
run=$!
echo -e "t_s\trss_kb" >"$out/rss.tsv"
start=$(date +%s)
while kill -0 $run 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$run/status 2>/dev/null || true)
  [ -n "$rss" ] && echo -e "$(( $(date +%s) - start ))\t$rss" >>"$out/rss.tsv"
  sleep 10
done
set +e
wait $run
code=$?
set -e
python3 - "$out" "$code" "$minutes" <<'PY'
import json, sqlite3, sys
out, code, minutes = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ok = True
def check(name, good, detail):
    global ok
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} {name}: {detail}")
check("no crash", code == 0, f"exit status {code}")
doc = json.load(open(f"{out}/soak.json"))
sent, completed, failed = doc["sent"], doc["completed"], doc["failed"]
by_kind = doc.get("errors_by_kind", {})
check("every request accounted for", sent == completed + failed and sum(by_kind.values()) == failed,
      f"{sent} sent = {completed} completed + {failed} failed; by kind {by_kind}")
db = sqlite3.connect(f"{out}/soak.db")
rows = db.execute("select count(*) from requests").fetchone()[0]
check("every request stored", rows >= sent, f"{rows} request rows for {sent} measured")
check("database intact", db.execute("pragma integrity_check").fetchone()[0] == "ok", "PRAGMA integrity_check")
samples = [tuple(map(float, l.split())) for l in open(f"{out}/rss.tsv").read().splitlines()[1:] if l.strip()]
# Flat while requests flow: the first against the last ten minutes of the
# run (a third of it for short soaks), from the first sample 10 s in (the
# sample at 0 s is of a process that has only just started: a 3-minute
# soak's first window read 57 MB with it, 67 MB without). After the run's
# end fleetbench reads every record back to compute the figures and writes
# --json-out; that peak is reported, not checked.
window = 600 if minutes >= 20 else max(30, minutes * 60 / 3)
run_end = minutes * 60
rss = [(t, r) for t, r in samples if 10 <= t <= run_end]
first = [r for t, r in rss if t <= window]
last = [r for t, r in rss if t >= run_end - window]
if first and last:
    a, b = sum(first) / len(first), sum(last) / len(last)
    check("memory flat while requests flow", b <= a * 1.10, f"mean RSS first {window:.0f} s {a/1024:.0f} MB, last {window:.0f} s {b/1024:.0f} MB ({100*(b/a-1):+.1f} %)")
else:
    check("memory flat while requests flow", False, "too few RSS samples")
if samples:
    print(f"info peak RSS {max(r for _, r in samples)/1024:.0f} MB (after the run: the figures computed from every stored record, and --json-out written)")
print(f"throughput {doc.get('output_throughput', 0):.0f} output tok/s, {doc.get('request_throughput', 0):.1f} req/s")
sys.exit(0 if ok else 1)
PY
