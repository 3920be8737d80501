#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet, all 1000 classes, SHOTS shots; a thin
# wrapper over `prometar sweep xd --phase train` (skips a finished run of the same config, resumes an unfinished
# one, refuses a folder made with another config unless SWEEP_ARGS=--rerun-changed).
# Usage: DATA=/path/to/data scripts/xd_train.sh SEED [extra train.py args]
# Writes ${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}.
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, PYTHON (see scripts/_common.sh), SWEEP_ARGS (more `prometar sweep`
# flags, e.g. "--backend slurm --gpus-per-job 1").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 1 ] || die "usage: $0 SEED [extra train.py args]"
SEED=$1
shift 1
check_inputs imagenet
read -r -a sweep_args <<< "${SWEEP_ARGS:-}"
exec "${PY[@]}" -m prometar sweep xd --phase train --data "$DATA" --output "$OUTPUT" --trainer "$TRAINER" \
    --configs "$CFG" --shots "$SHOTS" --seeds "$SEED" --python "${PY[*]}" --no-report \
    ${sweep_args[@]+"${sweep_args[@]}"} -- "$@"
