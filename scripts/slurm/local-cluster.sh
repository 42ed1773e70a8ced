#!/usr/bin/env bash
# A one-node SLURM on this machine, on loopback: munged + slurmctld + slurmd as root, one node
# with this machine's CPUs and memory, one partition `debug`. For the tests and for trying the
# cluster commands of docs/cluster.md on a laptop. Debian/Ubuntu: `apt-get install slurm-wlm munge`.
#
#   scripts/slurm/local-cluster.sh start    # prints the line to run: export SLURM_CONF=...
#   scripts/slurm/local-cluster.sh stop
#   scripts/slurm/local-cluster.sh status
#
# Everything lives in $OPTLAB_SLURM_DIR (default /tmp/optlab-slurm): config, state, logs. The
# system's /etc/slurm is not touched; the clients find this cluster through SLURM_CONF.
set -euo pipefail
DIR=${OPTLAB_SLURM_DIR:-/tmp/optlab-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

die() { echo "local-cluster: $*" >&2; exit 1; }

write_conf() {
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  local host node
  host=$(hostname -s)
  # slurmd -C: this machine's CPUs, sockets, cores, threads and memory, as a NodeName line.
  node=$(slurmd -C | head -n 1 | sed -e "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
  cat > "$CONF" <<CONF
ClusterName=optlab-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${OPTLAB_SLURMCTLD_PORT:-6817}
SlurmdPort=${OPTLAB_SLURMD_PORT:-6818}
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
  [ -f /etc/munge/munge.key ] || die "no /etc/munge/munge.key: install munge (apt-get install munge)"
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown -R munge: /run/munge /var/log/munge /var/lib/munge /etc/munge 2>/dev/null || true
  if id munge >/dev/null 2>&1; then
    su -s /bin/sh munge -c munged 2>/dev/null || munged --force
  else
    munged --force
  fi
}

wait_idle() {
  for _ in $(seq 1 60); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qE "^(idle|mixed|allocated)"; then return 0; fi
    sleep 0.5
  done
  die "the node did not come up; see $DIR/log/slurmctld.log and slurmd.log"
}

case "${1:-}" in
  start)
    command -v slurmctld >/dev/null || die "slurmctld not found: apt-get install slurm-wlm munge"
    "$0" stop >/dev/null 2>&1 || true
    write_conf
    start_munge
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    wait_idle
    echo "export SLURM_CONF=$CONF"
    ;;
  stop)
    for daemon in slurmd slurmctld; do
      [ -f "$DIR/$daemon.pid" ] && kill "$(cat "$DIR/$daemon.pid")" 2>/dev/null || true
    done
    for _ in $(seq 1 20); do
      pgrep -f "slurm(ctld|d) -f $CONF" >/dev/null || break
      sleep 0.25
    done
    pkill -9 -f "slurm(ctld|d) -f $CONF" 2>/dev/null || true
    rm -rf "$DIR/state" "$DIR/spool"
    ;;
  status)
    [ -f "$CONF" ] || die "not started"
    sinfo
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
