#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 2: evaluate the ImageNet model of xd_train.sh on DATASET
# (imagenetv2, imagenet_sketch, imagenet_a, imagenet_r, or any other dataset config), all classes,
# full test split (no few-shot).
# Usage: DATA=/path/to/data scripts/xd_test.sh DATASET SEED [extra train.py args]
# Loads ${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED} at LOADEP (default: latest) and
# writes ${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}; skips a finished run.
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, LOADEP, PYTHON (see scripts/_common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 2 ] || die "usage: $0 DATASET SEED [extra train.py args]"
DATASET=$1
SEED=$2
shift 2

MODEL_DIR=${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}
DIR=${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}
if run_is_finished "$DIR"; then
    echo "Skip ${DATASET} seed ${SEED}: finished evaluation in ${DIR}"
    exit 0
fi
check_inputs "$DATASET"
EPOCH=$(model_epoch "$MODEL_DIR" "run xd_train.sh ${SEED} first")
echo "Evaluate ${MODEL_DIR} (epoch ${EPOCH}) on ${DATASET}, output to ${DIR}"
run_train "$DATASET" "$SEED" "$DIR" \
    --model-dir "$MODEL_DIR" \
    --load-epoch "$EPOCH" \
    --eval-only \
    "$@" \
    DATASET.SUBSAMPLE_CLASSES all
