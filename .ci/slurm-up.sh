#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine for the sweep tests (idempotent).
# Installs Debian's slurmctld, slurmd, slurm-client and munge when missing (needs root and apt-get), writes
# /etc/slurm/slurm.conf (only when absent or written by this script), starts munged, slurmctld and slurmd
# unless they already run, and waits until the node is idle. The daemons it started are recorded in
# $STATE_DIR/started so that .ci/slurm-down.sh stops exactly those.
# Exit status: 0 when `sinfo` shows an idle node, 1 otherwise (with the reason on stderr).
set -uo pipefail

STATE_DIR=${PROMETAR_SLURM_STATE:-/run/prometar-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by prometar .ci/slurm-up.sh"
WAIT_S=${PROMETAR_SLURM_WAIT_S:-60}

say() { echo "slurm-up: $*" >&2; }
fail() { say "$*"; exit 1; }

have_all() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } >/dev/null 2>&1

if ! have_all; then
    [ "$(id -u)" = 0 ] || fail "slurmctld/slurmd/sbatch/munged missing and not root: cannot apt-get install them"
    command -v apt-get >/dev/null 2>&1 || fail "slurmctld/slurmd/sbatch/munged missing and no apt-get on this machine"
    say "installing slurmctld slurmd slurm-client munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed (trying the install anyway)"
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
        || fail "apt-get install slurmctld slurmd slurm-client munge failed"
    have_all || fail "slurm packages installed but slurmctld/slurmd/sbatch/munged still not on PATH"
fi
[ "$(id -u)" = 0 ] || fail "starting munged, slurmctld and slurmd here needs root"

mkdir -p "$STATE_DIR" /var/log/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /run/munge /etc/slurm
touch "$STATE_DIR/started"
record() { grep -qx "$1" "$STATE_DIR/started" || echo "$1" >> "$STATE_DIR/started"; }

# --- munge -------------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none || fail "cannot write /etc/munge/munge.key"
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged 2>/dev/null || /usr/sbin/munged --force \
        || fail "munged did not start (see /var/log/munge/munged.log)"
    record munged
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    munge -n | unmunge >/dev/null 2>&1 || fail "munged started but munge -n | unmunge fails"
fi

# --- slurm.conf ----------------------------------------------------------------------------------------
node_line=$(slurmd -C 2>/dev/null | head -n 1)
case "$node_line" in NodeName=*) ;; *) fail "slurmd -C did not print a NodeName line: '$node_line'" ;; esac
node=$(echo "$node_line" | sed -E 's/^NodeName=([^ ]+).*/\1/')
if [ ! -f "$CONF" ] || head -n 1 "$CONF" | grep -qxF "$MARK"; then
    cat > "$CONF.tmp" <<EOF
$MARK
ClusterName=prometar-ci
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=60
KillWait=5
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
else
    say "keeping the existing $CONF (not written by this script)"
fi

# --- daemons -------------------------------------------------------------------------------------------
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
    slurmctld 2>>"$STATE_DIR/slurmctld.err" || fail "slurmctld did not start ($STATE_DIR/slurmctld.err, /var/log/slurm/slurmctld.log)"
    record slurmctld
fi
if ! alive "$STATE_DIR/slurmd.pid" && ! pgrep -x slurmd >/dev/null; then
    slurmd 2>>"$STATE_DIR/slurmd.err" || fail "slurmd did not start ($STATE_DIR/slurmd.err, /var/log/slurm/slurmd.log)"
    record slurmd
fi

# --- wait for the node ---------------------------------------------------------------------------------
state=""
for _ in $(seq $((WAIT_S * 2))); do
    state=$(sinfo -h -N -n "$node" -o %t 2>/dev/null | head -n 1)
    case "$state" in
        idle|mix|alloc) echo "slurm-up: node $node is $state"; exit 0 ;;
        down*|drain*|drng*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 ;;
    esac
    sleep 0.5
done
fail "node $node not idle after ${WAIT_S}s (state '${state}'); see /var/log/slurm/slurmctld.log and slurmd.log"
