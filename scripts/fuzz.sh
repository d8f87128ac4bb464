#!/usr/bin/env bash
# Fuzzes every input parser fleetbench has (SSE decoder, OpenAI and
# Anthropic events, the Prometheus text parser, the diagnosis extractor and
# validator, price sheets and arena backends files, PromQL queries and the
# engine's OpenMetrics reader) for a bounded number of
# executions each. Not part of CI's time budget.
#
#   scripts/fuzz.sh [RUNS_PER_TARGET] [TARGET...]     (default 200000, every target)
#
# Seeds are committed under fuzz/seeds/<target>; the growing corpus lives in
# fuzz/corpus/<target> and a crash in fuzz/artifacts/<target>/ (both
# ignored by git). A crash found becomes a regression test in the crate
# that owns the parser.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-200000}
shift || true
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "== installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz passes flags the stable compiler accepts only in bootstrap
# mode; without a sanitizer no nightly runtime library is needed.
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t: $runs executions"
  log=$(mktemp)
  if cargo fuzz run --fuzz-dir fuzz --sanitizer none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
      -- -runs="$runs" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$log" | tail -n 2
  else
    status=1
    echo "!! $t found a failure:"
    grep -E "panicked|ERROR|Test unit written" "$log" | head -n 5
  fi
  rm -f "$log"
done
exit $status
