#!/usr/bin/env bash
# A single-node Slurm cluster for the tests, on loopback, thrown away afterwards.
#
#   scripts/ensure-slurm.sh            installs Slurm and munge if missing (Debian: slurmd, slurmctld,
#                                      slurm-client, munge); prints the directory of sbatch
#   scripts/ensure-slurm.sh start      starts munged, slurmctld and slurmd with a generated slurm.conf under a
#                                      fresh directory and prints "SLURM_CONF DIR" once the node is idle
#   scripts/ensure-slurm.sh stop DIR   stops them and removes the directory
#
# Everything the daemons write (keys, sockets, state, spool, logs, pid files) lives in that directory: nothing
# under /etc or /var is touched. The node declares 8 CPUs whatever the machine has (config_overrides), so that a
# 4-task array runs all at once on a 2-core CI machine, as sharded runs need.
#
# Root: slurmd starts each job step as the submitting user through setuid and needs root for it (Slurm has no
# rootless mode for slurmd), and Debian installs the packages with apt-get. The tests and CI run as root here;
# without root this script says so and stops.
set -euo pipefail
cache=${FLEETBENCH_CACHE:-$HOME/.cache/fleetbench}/slurm

if [ "$(id -u)" != 0 ]; then
  echo "ensure-slurm.sh needs root: slurmd runs job steps as the submitting user (setuid), which only root can" >&2
  exit 1
fi

if ! command -v slurmd >/dev/null || ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurmd slurmctld slurm-client munge >/dev/null
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case "${1:-}" in
  "")
    dirname "$(command -v sbatch)"
    ;;
  start)
    mkdir -p "$cache"
    dir=$(mktemp -d "$cache/cluster.XXXXXX")
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge" "$dir/log"
    chmod 700 "$dir/munge"
    # munge: a fresh key and a socket of our own.
    head -c 1024 /dev/urandom >"$dir/munge/munge.key"
    chmod 400 "$dir/munge/munge.key"
    munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
      --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
    node=$(hostname -s)
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    cat >"$dir/slurm.conf" <<CONF
ClusterName=fleetbench-test
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
NodeName=$node NodeAddr=127.0.0.1 CPUs=8 RealMemory=4096 State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
    export SLURM_CONF="$dir/slurm.conf"
    slurmctld -i -f "$SLURM_CONF" || { cat "$dir/log/slurmctld.log" >&2; exit 1; }
    slurmd -f "$SLURM_CONF" -N "$node" || { cat "$dir/log/slurmd.log" >&2; exit 1; }
    for _ in $(seq 1 60); do
      state=$(sinfo -h -N -o %T 2>/dev/null | head -n1 || true)
      case "$state" in idle*|mix*|alloc*) echo "$SLURM_CONF $dir"; exit 0 ;; esac
      sleep 1
    done
    echo "the Slurm node did not come up (state: ${state:-none}); logs under $dir/log:" >&2
    tail -n 20 "$dir"/log/*.log >&2
    exit 1
    ;;
  stop)
    dir=${2:?usage: ensure-slurm.sh stop DIR}
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
      [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 1
    rm -rf "$dir"
    ;;
  *)
    echo "usage: ensure-slurm.sh [start | stop DIR]" >&2
    exit 2
    ;;
esac
