#!/usr/bin/env bash
# Base-to-new, step 1: train on the base classes of DATASET with seed SEED; a thin wrapper over
# `prometar sweep base2new --phase train` (one job): a finished run of the same config is skipped, an unfinished
# one resumes, a folder made with another config is refused with its differing keys (SWEEP_ARGS=--rerun-changed
# moves it aside and trains again), and arguments that set what the script sets (seed, shots, classes, folders)
# are refused.
# Usage: DATA=/path/to/data scripts/base2new_train.sh DATASET SEED [extra train.py args]
# Writes ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}.
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, PYTHON (see scripts/_common.sh), SWEEP_ARGS (more `prometar sweep` flags).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 2 ] || die "usage: $0 DATASET SEED [extra train.py args]"
DATASET=$1
SEED=$2
shift 2
check_inputs "$DATASET"
read -r -a sweep_args <<< "${SWEEP_ARGS:-}"
exec "${PY[@]}" -m prometar sweep base2new --phase train --data "$DATA" --output "$OUTPUT" --trainer "$TRAINER" \
    --configs "$CFG" --shots "$SHOTS" --datasets "$DATASET" --seeds "$SEED" --python "${PY[*]}" --no-report \
    ${sweep_args[@]+"${sweep_args[@]}"} -- "$@"
