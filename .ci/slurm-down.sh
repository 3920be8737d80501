#!/usr/bin/env bash
# Stop the daemons that .ci/slurm-up.sh started (and only those); idempotent, always exits 0.
set -uo pipefail

STATE_DIR=${PROMETAR_SLURM_STATE:-/run/prometar-slurm}
[ -f "$STATE_DIR/started" ] || exit 0

stop_pidfile() {  # stop_pidfile NAME PIDFILE
    local pid
    [ -f "$2" ] || return 0
    pid=$(cat "$2")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
}

if grep -qx slurmd "$STATE_DIR/started"; then stop_pidfile slurmd "$STATE_DIR/slurmd.pid"; fi
if grep -qx slurmctld "$STATE_DIR/started"; then stop_pidfile slurmctld "$STATE_DIR/slurmctld.pid"; fi
if grep -qx munged "$STATE_DIR/started"; then stop_pidfile munged /run/munge/munged.pid; fi
rm -f "$STATE_DIR/started"
echo "slurm-down: stopped what slurm-up started"
exit 0
