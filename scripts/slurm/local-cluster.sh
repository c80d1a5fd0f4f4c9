#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for tests and for trying `rhx slurm` locally:
# munged + slurmctld + slurmd on localhost, with a config written here (nothing under
# /etc/slurm is touched; clients find it through SLURM_CONF).
#
#   bash scripts/slurm/local-cluster.sh start    # installs slurmctld/slurmd/munge with apt if missing, starts them
#   bash scripts/slurm/local-cluster.sh env      # prints `export SLURM_CONF=...` for sbatch/squeue/scancel
#   bash scripts/slurm/local-cluster.sh stop
#
# State, logs and the config live in $RHX_SLURM_DIR (default /tmp/rhx-slurm). Needs root (or
# sudo): slurmd runs jobs as the submitting user. Idempotent: `start` on a running cluster
# only checks that it answers.
set -euo pipefail
DIR=${RHX_SLURM_DIR:-/tmp/rhx-slurm}
CONF=$DIR/slurm.conf
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "local-cluster: needs root or sudo (slurmd starts jobs as their user)" >&2; exit 1; fi
fi

say() { printf 'local-cluster: %s\n' "$*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return
  fi
  if ! command -v apt-get >/dev/null; then
    echo "local-cluster: slurmctld/slurmd/munge are missing and there is no apt-get to install them" >&2
    exit 3
  fi
  say "installing slurmctld slurmd slurm-client munge (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  # RealMemory in MB, a little under what the machine has so slurmd accepts the node.
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
  $SUDO mkdir -p "$DIR/state" "$DIR/spool"
  $SUDO tee "$CONF" >/dev/null <<CONF
# Written by scripts/slurm/local-cluster.sh: one node, this machine.
ClusterName=rhxlocal
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=${RHX_SLURMCTLD_PORT:-6817}
SlurmdPort=${RHX_SLURMD_PORT:-6818}
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
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# A task that asks no --mem gets its CPUs' share, so tasks run side by side.
DefMemPerCPU=$(( mem / cpus ))
ReturnToService=2
# A cancelled task gets SIGTERM, then SIGKILL 2 s later (the default waits 30 s).
KillWait=2
MinJobAge=300
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install
  write_conf
  if ! pgrep -x munged >/dev/null; then
    say "starting munged"
    $SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
    $SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if [ ! -s /etc/munge/munge.key ]; then
      $SUDO mkdir -p /etc/munge
      $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
      $SUDO chown munge:munge /etc/munge/munge.key; $SUDO chmod 400 /etc/munge/munge.key
    fi
    $SUDO runuser -u munge -- /usr/sbin/munged
  fi
  if running "$DIR/slurmctld.pid" && ! cmp -s "$CONF" "$CONF.running"; then
    say "config changed: restarting"; stop; sleep 1
  fi
  $SUDO cp "$CONF" "$CONF.running"
  if ! running "$DIR/slurmctld.pid"; then
    say "starting slurmctld (config $CONF)"
    $SUDO slurmctld -f "$CONF" -i
  fi
  if ! running "$DIR/slurmd.pid"; then
    say "starting slurmd"
    $SUDO slurmd -f "$CONF"
  fi
  export SLURM_CONF=$CONF
  for _ in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      say "up: $(sinfo -h -o '%P %D %t %c CPUs')"
      return 0
    fi
    # A node that registered as down (e.g. after a restart) is resumed.
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  echo "local-cluster: the node did not come up; logs: $DIR/slurmctld.log $DIR/slurmd.log" >&2
  tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  exit 1
}

stop() {
  for p in slurmd slurmctld; do
    if running "$DIR/$p.pid"; then $SUDO kill "$(cat "$DIR/$p.pid")"; fi
  done
  say "stopped slurmd and slurmctld (munged left running)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac
