#!/usr/bin/env bash
# Base-to-new, step 2: evaluate the model trained by base2new_train.sh on the SUB classes (new or base).
# Usage: DATA=/path/to/data scripts/base2new_test.sh DATASET SEED SUB [extra train.py args]
# Loads ${OUTPUT}/base2new/train_base/<...>/seed${SEED} (exactly the train script's folder) at epoch
# LOADEP (default: its latest checkpoint) and writes ${OUTPUT}/base2new/test_${SUB}/<...>/seed${SEED};
# skips the run when that folder already has a finished log.
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, LOADEP, PYTHON (see scripts/_common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 3 ] || die "usage: $0 DATASET SEED SUB(new|base) [extra train.py args]"
DATASET=$1
SEED=$2
SUB=$3
shift 3
case "$SUB" in new|base|all) ;; *) die "SUB must be new, base or all, got '${SUB}'" ;; esac

COMMON_DIR=${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
MODEL_DIR=${OUTPUT}/base2new/train_base/${COMMON_DIR}
DIR=${OUTPUT}/base2new/test_${SUB}/${COMMON_DIR}
if run_is_finished "$DIR"; then
    echo "Skip ${DATASET} seed ${SEED} (${SUB}): finished evaluation in ${DIR}"
    exit 0
fi
check_inputs "$DATASET"
EPOCH=$(model_epoch "$MODEL_DIR" "run base2new_train.sh ${DATASET} ${SEED} first")
echo "Evaluate ${MODEL_DIR} (epoch ${EPOCH}) on ${SUB} classes, output to ${DIR}"
run_train "$DATASET" "$SEED" "$DIR" \
    --model-dir "$MODEL_DIR" \
    --load-epoch "$EPOCH" \
    --eval-only \
    "$@" \
    DATASET.NUM_SHOTS "$SHOTS" \
    DATASET.SUBSAMPLE_CLASSES "$SUB"
