#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the Slurm tests (run as root).
#
#   .ci/slurm/setup.sh start   # install where missing, write slurm.conf, start munged, slurmctld,
#                              # slurmd, wait until the node is idle
#   .ci/slurm/setup.sh stop    # stop the daemons that `start` started, by their process ids
#
# Everything lives in $SGDLAB_SLURM_DIR (default /tmp/sgdlab-slurm): slurm.conf, the controller's
# state, slurmd's spool, the daemons' logs and the pid files. Clients find the cluster through
# SLURM_CONF=$SGDLAB_SLURM_DIR/slurm.conf (the system's /etc/slurm is left alone).
#
# The configuration needs no cgroups: proctrack/linuxproc, task/none, no accounting (so `sacct`
# does not work: use `scontrol show job` or `squeue`), select/cons_tres over cores, the node line
# from `slurmd -C`, and root as SlurmUser.
set -euo pipefail

DIR=${SGDLAB_SLURM_DIR:-/tmp/sgdlab-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

log() { echo "slurm-setup: $*" >&2; }

install_missing() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    local t0=$SECONDS
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "installed in $((SECONDS - t0)) s"
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    log "creating /etc/munge/munge.key"
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
}

write_conf() {
  local host node
  host=$(hostname -s)
  # `slurmd -C` prints this machine's node line (CPUs, sockets, cores, threads, memory).
  node=$(slurmd -C | head -n 1)
  case $node in
    NodeName=*) ;;
    *) log "slurmd -C printed no node line: $node"; exit 1 ;;
  esac
  mkdir -p "$DIR/state" "$DIR/spool"
  cat >"$CONF" <<EOF
# Written by .ci/slurm/setup.sh: a one-node cluster without cgroups or accounting.
ClusterName=sgdlab-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MaxArraySize=1001
KillWait=30
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# Whether the pid in file $2 is a live process named $1 (a stale pid file may name a pid that
# another process has taken since).
alive() { [ -s "$2" ] && [ "$(cat "/proc/$(cat "$2")/comm" 2>/dev/null)" = "$1" ]; }

start_munge() {
  if munge -n >/dev/null 2>&1; then
    log "munged already running; using it"
    return
  fi
  mkdir -p /run/munge
  chown munge:munge /run/munge
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$DIR/munged.started.pid"
  for _ in $(seq 50); do
    munge -n >/dev/null 2>&1 && return
    sleep 0.1
  done
  log "munged did not answer"
  exit 1
}

start() {
  if alive slurmctld "$DIR/slurmctld.pid" || alive slurmd "$DIR/slurmd.pid"; then
    log "a cluster started from $DIR is still running; run '$0 stop' first"
    exit 1
  fi
  install_missing
  # A munged that an earlier `start` started stays ours to stop.
  local old_munged=""
  alive munged "$DIR/munged.started.pid" && old_munged=$(cat "$DIR/munged.started.pid")
  rm -rf "$DIR"
  mkdir -p "$DIR"
  [ -n "$old_munged" ] && echo "$old_munged" >"$DIR/munged.started.pid"
  write_conf
  start_munge
  local t0=$SECONDS
  # -i: ignore state files that a previous cluster may have left (job ids restart at 1).
  slurmctld -i -f "$CONF"
  slurmd -f "$CONF"
  for _ in $(seq 120); do
    if [ "$(sinfo -h -N -o %T 2>/dev/null | head -n 1)" = idle ]; then
      log "node idle after $((SECONDS - t0)) s; export SLURM_CONF=$CONF"
      return
    fi
    sleep 0.5
  done
  log "the node did not become idle within 60 s:"
  sinfo -N -l >&2 || true
  tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  exit 1
}

stop_pid() {
  local name=$1 file=$2
  [ -s "$file" ] || return 0
  local pid
  pid=$(cat "$file")
  if alive "$name" "$file"; then
    kill -TERM "$pid"
    for _ in $(seq 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) ignored SIGTERM; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

stop() {
  stop_pid slurmd "$DIR/slurmd.pid"
  stop_pid slurmctld "$DIR/slurmctld.pid"
  stop_pid munged "$DIR/munged.started.pid"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
