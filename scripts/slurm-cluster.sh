#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the test suite and CI (`bench run --executor slurm`).
#
#   bash scripts/slurm-cluster.sh up      install slurm-wlm + munge if missing, start munged,
#                                         slurmctld and slurmd; wait until the node is idle
#   bash scripts/slurm-cluster.sh down    cancel the cluster's jobs, stop the daemons `up` started
#                                         (by the pids it wrote), remove what it linked into /etc
#   bash scripts/slurm-cluster.sh status  print the pids file and `sinfo`
#
# Configuration, state, spool and logs live in $BENCH_SLURM_DIR (default: $TMPDIR/bench-slurm or
# /tmp/bench-slurm); the pids of the daemons `up` started are in $BENCH_SLURM_DIR/pids, one
# "name pid" a line. Slurm's commands find the configuration through /etc/slurm/slurm.conf, which
# `up` links to $BENCH_SLURM_DIR/slurm.conf when no slurm.conf is there yet (and `down` removes the
# link), or through SLURM_CONF=$BENCH_SLURM_DIR/slurm.conf, which $BENCH_SLURM_DIR/env exports.
#
# Facts this follows (Debian 12, slurm-wlm 22.05): munged needs /run/munge owned by the munge
# user; slurm.conf names this host as SlurmctldHost and NodeName (address 127.0.0.1, so nothing
# leaves the loopback), takes CPUs and memory from `slurmd -C`, uses proctrack/linuxproc and
# task/none (no cgroups needed), SlurmUser=root and no accounting (so `sacct` fails; submitit only
# warns). Must run as root.
set -euo pipefail

DIR=${BENCH_SLURM_DIR:-${TMPDIR:-/tmp}/bench-slurm}
CONF=$DIR/slurm.conf
PIDS=$DIR/pids
ETC_CONF=/etc/slurm/slurm.conf

log() { echo "slurm-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# ours NAME PID: the process PID is alive and is NAME (a stale pids file after a reboot may name
# pids that now belong to something else, which must not be stopped)
ours() { alive "$2" && [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }

wait_pidfile() {  # wait_pidfile FILE SECONDS -> prints the pid once the file names a live process
  local file=$1 deadline=$((SECONDS + $2)) pid
  while [ $SECONDS -lt $deadline ]; do
    if [ -s "$file" ]; then
      pid=$(tr -dc '0-9' <"$file")
      if alive "$pid"; then echo "$pid"; return 0; fi
    fi
    sleep 0.2
  done
  return 1
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q slurm-wlm munge >"$DIR/apt.log" 2>&1; then
    log "apt-get install failed; updating the package lists and retrying"
    apt-get update -q >>"$DIR/apt.log" 2>&1
    apt-get install -y -q slurm-wlm munge >>"$DIR/apt.log" 2>&1 || { tail -20 "$DIR/apt.log" >&2; die "apt-get install failed (log: $DIR/apt.log)"; }
  fi
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  if munge_works; then
    log "munged already answers on its default socket; using it (not stopping it on down)"
    return 0
  fi
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || /usr/sbin/create-munge-key -f; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 755 /run/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- munged
  local pid
  pid=$(wait_pidfile /run/munge/munged.pid 20) || die "munged did not start (see /var/log/munge/munged.log)"
  echo "munged $pid" >>"$PIDS"
  munge_works || die "munged runs (pid $pid) but munge -n | unmunge fails"
}

write_conf() {
  local host node
  host=$(hostname)
  # `slurmd -C` prints this node's line: NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
  node=$(slurmd -C | head -1)
  [[ $node == NodeName=* ]] || die "slurmd -C printed no NodeName line: $node"
  mkdir -p "$DIR/state" "$DIR/spool"
  cat >"$CONF" <<EOF
# written by scripts/slurm-cluster.sh up; removed with its folder
ClusterName=bench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# a cancelled job gets SIGKILL 5 s after SIGTERM (default 30 s): keeps the tests fast
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  echo "export SLURM_CONF=$CONF" >"$DIR/env"
  if [ ! -e "$ETC_CONF" ] && [ ! -L "$ETC_CONF" ]; then
    mkdir -p "$(dirname "$ETC_CONF")"
    ln -s "$CONF" "$ETC_CONF"
    echo "$ETC_CONF" >"$DIR/linked"
  elif [ "$(readlink "$ETC_CONF" || true)" != "$CONF" ]; then
    log "$ETC_CONF exists and is not ours; export SLURM_CONF=$CONF (see $DIR/env) to reach this cluster"
  fi
}

start_slurm() {
  local pid
  rm -f "$DIR/slurmctld.pid" "$DIR/slurmd.pid"
  SLURM_CONF=$CONF slurmctld -f "$CONF"
  pid=$(wait_pidfile "$DIR/slurmctld.pid" 30) || { tail -20 "$DIR/slurmctld.log" >&2; die "slurmctld did not start"; }
  echo "slurmctld $pid" >>"$PIDS"
  SLURM_CONF=$CONF slurmd -f "$CONF"
  pid=$(wait_pidfile "$DIR/slurmd.pid" 30) || { tail -20 "$DIR/slurmd.log" >&2; die "slurmd did not start"; }
  echo "slurmd $pid" >>"$PIDS"
  local deadline=$((SECONDS + 60)) state=""
  while [ $SECONDS -lt $deadline ]; do
    state=$(SLURM_CONF=$CONF sinfo -h -o %T 2>/dev/null | head -1 || true)
    if [ "$state" = idle ]; then return 0; fi
    sleep 0.5
  done
  tail -20 "$DIR/slurmctld.log" >&2
  die "the node did not become idle within 60 s (state: ${state:-none})"
}

running() {  # true when every daemon listed in the pids file is alive
  [ -s "$PIDS" ] || return 1
  local name pid
  while read -r name pid; do ours "$name" "$pid" || return 1; done <"$PIDS"
}

up() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"
  if running; then
    log "already up ($(tr '\n' ' ' <"$PIDS")); config $CONF"
    return 0
  fi
  [ -s "$PIDS" ] && down
  rm -rf "$DIR"
  mkdir -p "$DIR"
  : >"$PIDS"
  install_packages
  start_munge
  write_conf
  start_slurm
  log "up in ${SECONDS}s: $(tr '\n' ' ' <"$PIDS"); config $CONF"
}

down() {
  if [ ! -f "$PIDS" ]; then
    log "nothing to stop (no $PIDS)"
    return 0
  fi
  # Jobs of this cluster run under slurmstepd, not under the daemons: cancel them first.
  if [ -f "$CONF" ] && running; then
    SLURM_CONF=$CONF timeout 20 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while [ $SECONDS -lt $deadline ] && [ -n "$(SLURM_CONF=$CONF squeue -h -o %i 2>/dev/null || true)" ]; do sleep 0.5; done
  fi
  local name pid
  tac "$PIDS" | while read -r name pid; do
    if ours "$name" "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do ours "$name" "$pid" || break; sleep 0.2; done
      if ours "$name" "$pid"; then log "$name ($pid) ignored SIGTERM; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
      log "stopped $name ($pid)"
    else
      log "$name ($pid) is not running"
    fi
  done
  if [ -f "$DIR/linked" ]; then
    local link
    link=$(cat "$DIR/linked")
    [ "$(readlink "$link" || true)" = "$CONF" ] && rm -f "$link"
    rm -f "$DIR/linked"
  fi
  rm -f "$PIDS"
}

status() {
  if [ -s "$PIDS" ]; then cat "$PIDS"; else log "no daemons recorded in $PIDS"; fi
  SLURM_CONF=$CONF sinfo 2>&1 || true
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status   (state in \$BENCH_SLURM_DIR, default ${TMPDIR:-/tmp}/bench-slurm)" >&2; exit 2 ;;
esac
