#!/usr/bin/env bash
# Runs every test of fleetbench on a fresh machine: installs and starts what
# the tests need (a real llama.cpp server with a tiny real model, Prometheus,
# Chromium, a throwaway PostgreSQL cluster, a single-node Slurm cluster,
# kubernetes-validate, the peer clients the simulator is compared with), then
# runs the whole Rust test suite against them.
#
#   scripts/test.sh [cargo test arguments] [-- test binary arguments]
#
# The tests that need those parts are #[ignore]d in a plain `cargo test`
# (which lists them as ignored, with the reason); this script runs them too,
# with --include-ignored. Set FLEETBENCH_SKIP_BROWSER=1,
# FLEETBENCH_SKIP_PROMETHEUS=1, FLEETBENCH_SKIP_POSTGRES=1,
# FLEETBENCH_SKIP_SLURM=1 or FLEETBENCH_SKIP_KUBERNETES_VALIDATE=1 to leave
# those parts out on a machine without them: their tests are then named in a
# --skip (CI never does).
set -euo pipefail
cd "$(dirname "$0")/.."
export FLEETBENCH_CACHE=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# No incremental build: a one-shot build gains nothing from it, and its
# working files add about 1.5 GiB to the target directory (a CI run once ran
# out of disk linking a test binary). Set CARGO_INCREMENTAL=1 to keep it.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# A first run wants about 12 GiB of disk (README); say what there is, so a
# run that fails for want of disk shows why.
echo "== free disk here: $(df -Ph . | awk 'NR == 2 {print $4}')"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "== starting the tiny llama.cpp server (SmolLM2-135M) on port $port"
FLEETBENCH_TINY_URL=$(scripts/tiny-server.sh --port "$port" --parallel 4 --ctx 32768 --background)
export FLEETBENCH_TINY_URL
FLEETBENCH_TINY_SLOTS=4
export FLEETBENCH_TINY_SLOTS
pg_dir=
slurm_dir=
cleanup() {
  kill "$(cat "$FLEETBENCH_CACHE/tiny/server-$port.pid")" 2>/dev/null || true
  if [ -n "$pg_dir" ]; then scripts/ensure-postgres.sh stop "$pg_dir" || true; fi
  if [ -n "$slurm_dir" ]; then scripts/ensure-slurm.sh stop "$slurm_dir" || true; fi
}
trap cleanup EXIT

FLEETBENCH_PEER_PYTHON=$(scripts/ensure-peers.sh)
export FLEETBENCH_PEER_PYTHON
echo "== peer client (openai Python SDK): $FLEETBENCH_PEER_PYTHON"
# The second peer, GuideLLM, has an environment of its own (torch included:
# 5.9 GiB and under two minutes the first time); the test runs this command.
FLEETBENCH_PEER_GUIDELLM=$(scripts/ensure-peers.sh guidellm)
export FLEETBENCH_PEER_GUIDELLM
echo "== peer client (GuideLLM): $FLEETBENCH_PEER_GUIDELLM"

skip=()
if [ "${FLEETBENCH_SKIP_PROMETHEUS:-0}" = 1 ]; then
  echo "== Prometheus: left out (FLEETBENCH_SKIP_PROMETHEUS=1); its tests are skipped"
  skip+=(--skip prometheus_scrapes_the_exporter_and_windows_round_trip
         --skip prometheus_meter_reads_dcgm_series_from_a_real_server
         --skip promtool_accepts_the_metrics_apart_from_colons
         --skip promql_engine_agrees_with_prometheus
         --skip investigate_promql_agrees_with_prometheus
         --skip every_grafana_panel_has_data_from_a_real_prometheus)
else
  echo "== Prometheus: $(scripts/ensure-prometheus.sh)"
fi
if [ "${FLEETBENCH_SKIP_POSTGRES:-0}" = 1 ]; then
  echo "== PostgreSQL: left out (FLEETBENCH_SKIP_POSTGRES=1); its tests are skipped"
  skip+=(--skip ::postgres --skip _on_postgres --skip postgres_passwords_stay_secret
         --skip a_postgres_password_is_never_shown_or_stored)
else
  # The URL carries the cluster's throwaway password: exported for the tests, never printed.
  read -r FLEETBENCH_TEST_POSTGRES pg_dir < <(scripts/ensure-postgres.sh start)
  [ -n "$pg_dir" ] || { echo "PostgreSQL did not start" >&2; exit 1; }
  export FLEETBENCH_TEST_POSTGRES
  echo "== PostgreSQL: throwaway cluster in $pg_dir (${FLEETBENCH_TEST_POSTGRES##*@})"
fi
if [ "${FLEETBENCH_SKIP_SLURM:-0}" = 1 ]; then
  echo "== Slurm: left out (FLEETBENCH_SKIP_SLURM=1); its test is skipped"
  skip+=(--skip a_slurm_array_of_four_shards_makes_one_exact_run)
else
  read -r FLEETBENCH_SLURM_CONF slurm_dir < <(scripts/ensure-slurm.sh start)
  [ -n "$slurm_dir" ] || { echo "Slurm did not start" >&2; exit 1; }
  export FLEETBENCH_SLURM_CONF
  echo "== Slurm: single-node cluster in $slurm_dir"
fi
if [ "${FLEETBENCH_SKIP_KUBERNETES_VALIDATE:-0}" = 1 ]; then
  echo "== kubernetes-validate: left out (FLEETBENCH_SKIP_KUBERNETES_VALIDATE=1); its test is skipped"
  skip+=(--skip the_kubernetes_manifests_validate_against_the_api_schemas)
else
  FLEETBENCH_KUBERNETES_VALIDATE=$(scripts/ensure-kubernetes-validate.sh)
  export FLEETBENCH_KUBERNETES_VALIDATE
  echo "== kubernetes-validate: $FLEETBENCH_KUBERNETES_VALIDATE"
fi
if [ "${FLEETBENCH_SKIP_BROWSER:-0}" = 1 ]; then
  echo "== Chromium: left out (FLEETBENCH_SKIP_BROWSER=1); its tests are skipped"
  skip+=(--skip dashboard_in_a_real_browser --skip charts_grow_while_a_sweep_runs
         --skip report_opens_from_file_url_with_visible_charts)
else
  echo "== Chromium: $(scripts/ensure-chromium.sh)"
fi

# Arguments before a `--` go to cargo, those after it to the test binaries.
cargo_args=()
test_args=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then
    shift
    test_args=("$@")
    break
  fi
  cargo_args+=("$1")
  shift
done

echo "== cargo test --workspace --locked ${cargo_args[*]} -- --include-ignored ${skip[*]} ${test_args[*]}"
cargo test --workspace --locked "${cargo_args[@]}" -- --include-ignored "${skip[@]}" "${test_args[@]}"
