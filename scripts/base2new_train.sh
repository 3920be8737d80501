#!/usr/bin/env bash
# Base-to-new, step 1: train on the base classes of DATASET with seed SEED.
# Usage: DATA=/path/to/data scripts/base2new_train.sh DATASET SEED [extra train.py args]
# Writes ${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED};
# skips the run when that folder already has a finished log (an unfinished one resumes).
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, PYTHON (see scripts/_common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 2 ] || die "usage: $0 DATASET SEED [extra train.py args]"
DATASET=$1
SEED=$2
shift 2

DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
if run_is_finished "$DIR"; then
    echo "Skip ${DATASET} seed ${SEED}: finished run in ${DIR}"
    exit 0
fi
check_inputs "$DATASET"
if [ -d "$DIR" ]; then
    echo "Re-run (resumes from its checkpoint if any) in ${DIR}"
else
    echo "Run this job and save the output to ${DIR}"
fi
run_train "$DATASET" "$SEED" "$DIR" \
    "$@" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES base
