#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 1: train on ImageNet, all 1000 classes, SHOTS shots.
# Usage: DATA=/path/to/data scripts/xd_train.sh SEED [extra train.py args]
# Writes ${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}; skips a finished run.
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, PYTHON (see scripts/_common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 1 ] || die "usage: $0 SEED [extra train.py args]"
SEED=$1
shift 1

DIR=${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
if run_is_finished "$DIR"; then
    echo "Skip imagenet seed ${SEED}: finished run in ${DIR}"
    exit 0
fi
check_inputs imagenet
echo "Run this job and save the output to ${DIR}"
run_train imagenet "$SEED" "$DIR" \
    "$@" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES all
