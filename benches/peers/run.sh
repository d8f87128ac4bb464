#!/usr/bin/env bash
# Peer comparison: fleetbench and the Python benchmark clients (GuideLLM, NVIDIA
# AIPerf, vLLM's `vllm bench serve`) against the same exact-timing SSE server
# (fleetbench-testserver: first token at 50 ms, one token every 10 ms, 100
# tokens). Each client is pinned to core 0, the server to core 1. Prints one
# Markdown table: client CPU µs per streamed token (getrusage of the client
# process, user+sys), streamed tokens/s over the process's wall time, peak RSS,
# and the TTFT/ITL each client reports; "added" is reported − the server's 50 ms.
# The server is the lean one (crates/testkit/src/lean.rs: one task and one
# write per token); at 1,000 streams its core is busy with the kernel's work
# of sending, and it writes some first tokens late. That lateness is no
# client's doing: its own column shows it, from the server's GET /lateness.
#
#   benches/peers/run.sh [--quick] [--levels "1 10 100 256 500 1000"] [--requests-per-stream K]
#                        [--requests N] [--tokens T] [--clients "fleetbench fleetbench-cold guidellm aiperf vllm"]
#                        [--realtime]
#   benches/peers/run.sh --zero-delay [--levels "32 256"] [--requests 25000] [--tokens 200]
#                        [--writes "token answer"] [--json-out] [--clients fleetbench]
#
# --realtime puts the server and the clients of the exact-timing runs at
# the lowest real-time priority (chrt -f 1) where the OS allows it (root or
# CAP_SYS_NICE), so that kernel threads and other processes cannot hold
# them off a core for milliseconds. AIPerf is left at normal priority: its
# timing process polls without sleeping, and at real-time priority on one
# core it starves its own worker processes (a run made no progress in 30
# minutes). A real-time process that keeps its core over 95 % busy is
# paused by the kernel for 50 ms a second, which a client at 1,000 streams
# does, so real-time runs are not the default. The header says which. Each
# client run is stopped after CLIENT_TIMEOUT seconds (600; 3,600 with
# --zero-delay) and shows as failed.
#
# fleetbench opens its connections before its clock starts (as a client with
# a warm pool); the client "fleetbench-cold" is fleetbench with
# --no-preconnect, whose first requests connect inside their TTFT as the
# peers' do.
#
# Requests per level: max(50, K × concurrency), K = 5 (--quick: levels "1 100",
# max(10, 2 × concurrency)); --requests N: N at every level. --tokens T: tokens
# per answer (100; --zero-delay: 200).
#
# --zero-delay measures the client's own cost instead of the latency it adds:
# servers that never wait, 25,000 requests at each level (default levels 32
# and 256). --writes names the servers: "token", each token in its own HTTP
# chunk as inference servers stream them (fleetbench-testserver --scripted
# --ttft-ms 0 --itl-ms 0, the axum server, whose writes carry the chunks
# ready at once; the issue's measure), and "answer", each answer's T
# tokens in one write (fleetbench-fixed-server: the parsing alone); both by
# default. The table: client CPU µs per streamed token (user+sys), the
# client's CPU and wall seconds, streamed tokens/s over the process's wall
# time, and peak RSS. fleetbench runs as a user measuring throughput would,
# without --json-out (the table needs nothing from it); --json-out adds it, and
# with it the export of every ITL (5 M numbers here: about 0.3 µs per token and
# 400 MB more). Only fleetbench runs unless --clients names peers (they spend
# about 100 times its CPU per token, so their 25,000 requests take many
# minutes each).
#
# Peers are installed from PyPI into a virtual environment under
# ${FLEETBENCH_CACHE:-~/.cache/fleetbench}/peers-bench (the only network use); a
# peer that does not install or run is listed as skipped with the reason.
# Peers that need a tokenizer get a small local one (made with `tokenizers`),
# so nothing is downloaded from Hugging Face.
# BIN_DIR=DIR uses binaries already built there instead of building.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/peers

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

zero_delay=0 quick=0 json_out=1 realtime=0
levels="" per_stream=5 min_requests=50 requests="" tokens="" clients="" writes="token answer"
ttft_ms=50 itl_ms=10
while [ $# -gt 0 ]; do
  case "$1" in
    --zero-delay) zero_delay=1 json_out=0; shift ;;
    --json-out) json_out=1; shift ;;
    --realtime) realtime=1; shift ;;
    --quick) quick=1; per_stream=2; min_requests=10; shift ;;
    --levels) levels=${2:?--levels needs a value}; shift 2 ;;
    --requests-per-stream) per_stream=${2:?--requests-per-stream needs a value}; shift 2 ;;
    --requests) requests=${2:?--requests needs a value}; shift 2 ;;
    --tokens) tokens=${2:?--tokens needs a value}; shift 2 ;;
    --clients) clients=${2:?--clients needs a value}; shift 2 ;;
    --writes) writes=${2:?--writes needs a value}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "error: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

die() { echo "error: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 is needed (for the venv and getrusage)"
if [ "$zero_delay" = 1 ]; then
  [ "$quick" = 0 ] || die "--quick is for the exact-timing run; use --requests with --zero-delay"
  : "${levels:=32 256}" "${requests:=25000}" "${tokens:=200}" "${clients:=fleetbench}"
elif [ "$quick" = 1 ]; then
  : "${levels:=1 100}" "${tokens:=100}" "${clients:=fleetbench fleetbench-cold guidellm aiperf vllm}"
else
  : "${levels:=1 10 100 256 500 1000}" "${tokens:=100}" "${clients:=fleetbench fleetbench-cold guidellm aiperf vllm}"
fi
for w in $writes; do
  case "$w" in token|answer) ;; *) die "--writes: '$w' is neither token nor answer" ;; esac
done
for v in "$tokens" $requests; do
  [[ $v =~ ^[0-9]+$ && $v -gt 0 ]] || die "--tokens and --requests take a positive whole number, not '$v'"
done
max_level=0
for c in $levels; do
  [[ $c =~ ^[0-9]+$ && $c -gt 0 ]] || die "--levels: '$c' is not a positive whole number"
  [ "$c" -gt "$max_level" ] && max_level=$c
done

# Each stream is a socket on both sides; leave room.
want_fds=$((max_level * 2 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
  ulimit -n "$want_fds" 2>/dev/null || echo "warning: could not raise the open-file limit to $want_fds ($(ulimit -n))" >&2
fi

# --- 1. binaries -------------------------------------------------------------
# One server per kind of run: "exact" timing, or zero delay with each "token"
# or each "answer" in one write.
if [ "$zero_delay" = 1 ]; then
  kinds=$writes
else
  kinds=exact
fi
bins=(fleetbench) build=(-p fleetbench --bin fleetbench)
if [[ " $kinds " == *" exact "* || " $kinds " == *" token "* ]]; then
  bins+=(fleetbench-testserver) build+=(-p fleetbench-testkit --bin fleetbench-testserver)
fi
if [[ " $kinds " == *" answer "* ]]; then
  bins+=(fleetbench-fixed-server) build+=(-p fleetbench-sim --bin fleetbench-fixed-server)
fi
if [ -z "${BIN_DIR:-}" ]; then
  echo "building ${bins[*]} (release)..." >&2
  cargo build --release --locked "${build[@]}" >&2 || die "cargo build failed"
  BIN_DIR=${CARGO_TARGET_DIR:-target}/release
fi
for b in "${bins[@]}"; do
  [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing (build it, or set BIN_DIR)"
done

# --- 2. peers ----------------------------------------------------------------
cache=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}/peers-bench
venv=$cache   # the virtual environment itself
declare -A skipped=()
want() { [[ " $clients " == *" $1 "* ]]; }
need_peers=0
for p in guidellm aiperf vllm; do want "$p" && need_peers=1; done
if [ "$need_peers" = 1 ]; then
  mkdir -p "$cache"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install -q --upgrade pip >&2 || true
  fi
  install_peer() { # name, pip spec, command that must then work
    local name=$1 spec=$2 check=$3
    if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
      echo "installing $name ($spec) into $venv..." >&2
      if ! "$venv/bin/pip" install -q "$spec" >"$cache/pip-$name.log" 2>&1; then
        skipped[$name]="pip install $spec failed: $(grep -m1 -i error "$cache/pip-$name.log" | cut -c1-160)"
        return
      fi
    fi
    "$venv/bin/python" -c "$check" >/dev/null 2>&1 || skipped[$name]="installed but does not import ($check)"
  }
  want guidellm && install_peer guidellm guidellm "import guidellm"
  want aiperf && install_peer aiperf aiperf "import aiperf"
  if want vllm; then
    # vLLM's wheels are built for CUDA; without a GPU its import (and `vllm bench
    # serve`) is not expected to work, and the download is several GB.
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
      install_peer vllm vllm "import vllm"
    else
      skipped[vllm]="no GPU here: vLLM's PyPI wheels need CUDA (several GB, torch included), so 'vllm bench serve' is not installed"
    fi
  fi
  tok=$cache/local-tokenizer
  if [ ! -s "$tok/tokenizer.json" ] && { want guidellm || want aiperf; }; then
    "$venv/bin/python" "$here/peers.py" tokenizer "$tok" >&2 2>"$cache/tokenizer.log" ||
      for p in guidellm aiperf; do
        [ -z "${skipped[$p]:-}" ] && skipped[$p]="no local tokenizer could be made (see $cache/tokenizer.log); it would download one from Hugging Face"
      done
  fi
fi

# --- 3. server and runs --------------------------------------------------------
out=$(mktemp -d /tmp/fleetbench-peers.XXXXXX)
pin_client=() pin_server=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_client=(taskset -c 0) pin_server=(taskset -c 1)
else
  echo "warning: no taskset or fewer than 2 cores: client and server are not pinned" >&2
fi
priority="normal priority" rt=()
if [ "$zero_delay" = 0 ] && [ "$realtime" = 1 ]; then
  if command -v chrt >/dev/null && chrt -f 1 true 2>/dev/null; then
    rt=(chrt -f 1) pin_server=(chrt -f 1 "${pin_server[@]}")
    priority="real-time priority (SCHED_FIFO 1) for the server and every client but AIPerf (see --help)"
  else
    echo "warning: real-time priority refused (needs root or CAP_SYS_NICE): running at normal priority" >&2
  fi
fi
client_timeout=${CLIENT_TIMEOUT:-600}
[ "$zero_delay" = 1 ] && client_timeout=${CLIENT_TIMEOUT:-3600}
launch() { # client -> the words that start it: time limit, priority, core
  local words=(timeout -k 10 "$client_timeout")
  [ "$1" != aiperf ] && words+=("${rt[@]}")
  printf '%s\n' "${words[@]}" "${pin_client[@]}"
}
server=""
trap 'kill $server 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "outputs kept in $out" >&2 || rm -rf "$out"' EXIT
server_cmd() { # kind -> the server's command line, one word a line
  case "$1" in
    exact) printf '%s\n' "$BIN_DIR/fleetbench-testserver" --ttft-ms "$ttft_ms" --itl-ms "$itl_ms" --tokens "$tokens" ;;
    token) printf '%s\n' "$BIN_DIR/fleetbench-testserver" --ttft-ms 0 --itl-ms 0 --tokens "$tokens" --scripted ;;
    answer) printf '%s\n' "$BIN_DIR/fleetbench-fixed-server" --tokens "$tokens" ;;
  esac
}
start_server() { # kind: starts it, sets url and root
  local cmd
  mapfile -t cmd < <(server_cmd "$1")
  [ -n "$server" ] && { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  rm -f "$out/server.url"
  "${pin_server[@]}" "${cmd[@]}" >"$out/server.url" &
  server=$!
  for _ in $(seq 50); do [ -s "$out/server.url" ] && break; sleep 0.1; done
  [ -s "$out/server.url" ] || die "${cmd[0]##*/} did not start"
  url=$(head -n 1 "$out/server.url")   # http://127.0.0.1:PORT/v1
  root=${url%/v1}
}

run_client() { # client, concurrency, requests, dir -> the result file's path on stdout
  local client=$1 c=$2 n=$3 d=$4 py=("$venv/bin/python") start
  mapfile -t start < <(launch "$client")
  case "$client" in
    fleetbench|fleetbench-cold)
      local out_args=()
      [ "$json_out" = 1 ] && out_args=(--json-out "$d/result.json")
      [ "$client" = fleetbench-cold ] && out_args+=(--no-preconnect)
      python3 "$here/peers.py" measure "$d/measure.json" -- "${start[@]}" "$BIN_DIR/fleetbench" --quiet \
        --db "$d/run.db" run --url "$url" --model m --concurrency "$c" --requests "$n" \
        --workload "synthetic:in=32,out=$tokens" --max-tokens "$tokens" "${out_args[@]}"
      echo "$d/result.json" ;;
    guidellm)
      # GuideLLM 0.8's `run` (older releases: `benchmark run` with plain flags).
      python3 "$here/peers.py" measure "$d/measure.json" -- "${start[@]}" "$venv/bin/guidellm" run \
        --backend "kind=openai_http,target=$root,model=m,request_format=/v1/chat/completions,validate_backend=false" \
        --profile "kind=concurrent,streams=$c" --constraint "kind=max_requests,count=$n" \
        --tokenizer "kind=huggingface_auto,model=$tok" \
        --data "kind=synthetic_text,prompt_tokens=32,output_tokens=$tokens" \
        --output "kind=json,path=$d/result.json" --disable-console-interactive
      echo "$d/result.json" ;;
    aiperf)
      python3 "$here/peers.py" measure "$d/measure.json" -- "${start[@]}" "$venv/bin/aiperf" profile \
        --model m --url "$root" --endpoint-type chat --streaming --tokenizer "$tok" \
        --concurrency "$c" --request-count "$n" --synthetic-input-tokens-mean 32 --synthetic-input-tokens-stddev 0 \
        --output-tokens-mean "$tokens" --output-tokens-stddev 0 --use-server-token-count --artifact-dir "$d/artifacts" --ui-type none
      find "$d/artifacts" -name 'profile_export_aiperf.json' 2>/dev/null | head -n 1 ;;
    vllm)
      python3 "$here/peers.py" measure "$d/measure.json" -- "${start[@]}" "${py[@]}" -m vllm.entrypoints.cli.main bench serve \
        --backend openai-chat --base-url "$root" --endpoint /v1/chat/completions --model m --tokenizer "$tok" \
        --dataset-name random --random-input-len 32 --random-output-len "$tokens" --ignore-eos \
        --max-concurrency "$c" --num-prompts "$n" --request-rate inf --save-result --result-dir "$d" --result-filename result.json
      echo "$d/result.json" ;;
  esac
}

describe() { local cmd; mapfile -t cmd < <(server_cmd "$1"); cmd[0]=${cmd[0]##*/}; echo "${cmd[*]}"; }
for kind in $kinds; do echo "Server ($kind): $(describe "$kind")"; done
echo "Clients on core 0, servers on core 1, $priority. Date $(date -u '+%F %H:%M UTC'), $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [ "$zero_delay" = 1 ]; then
  echo "| client | server writes | concurrency (requests) | CPU µs / streamed token | client CPU s | process wall s | streamed tokens/s (process wall) | peak RSS, MB |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
else
  echo "| client | concurrency (requests) | CPU µs / streamed token | streamed tokens/s (process wall) | peak RSS, MB | TTFT mean / median, ms | TTFT added mean / median, ms | server's first tokens late mean / median, ms | ITL mean, ms |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
fi
for kind in $kinds; do
  start_server "$kind"
  for c in $levels; do
    if [ -n "$requests" ]; then
      n=$requests
    else
      n=$((c * per_stream)); [ "$n" -lt "$min_requests" ] && n=$min_requests
    fi
    for client in $clients; do
      case "$client" in fleetbench|fleetbench-cold|guidellm|aiperf|vllm) ;; *) die "unknown client $client (fleetbench fleetbench-cold guidellm aiperf vllm)" ;; esac
      [ -n "${skipped[$client]:-}" ] && continue
      d=$out/$kind-$client-$c; mkdir -p "$d"
      python3 "$here/peers.py" lateness "$root" -   # starts the server's count afresh
      result=$(run_client "$client" "$c" "$n" "$d" || true)
      python3 "$here/peers.py" lateness "$root" "$d/lateness.json"
      if [ "$zero_delay" = 1 ]; then
        python3 "$here/peers.py" cpu-row "$client" "each $kind" "$c" "$n" "$tokens" "$d/measure.json"
      else
        python3 "$here/peers.py" row "$client" "$c" "$n" "$tokens" "$ttft_ms" "$d/measure.json" "${result:-$d/none}" "$d/lateness.json"
      fi
      if [ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rc"])' "$d/measure.json")" != 0 ]; then
        echo "  $client at $c failed; the end of its output:" >&2
        tail -n 5 "$d/measure.json.log" >&2
      fi
    done
  done
done
echo
echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${#skipped[@]}" -gt 0 ]; then
  echo
  for p in "${!skipped[@]}"; do echo "- skipped $p: ${skipped[$p]}"; done
fi
