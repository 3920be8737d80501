#!/usr/bin/env bash
# Base-to-new, step 2: evaluate the model trained by base2new_train.sh on the SUB classes (new or base); a thin
# wrapper over `prometar sweep base2new --phase test` (one job): a finished evaluation of the same config and of
# the model file there now is skipped, one of a model trained again since is moved aside and run again.
# Usage: DATA=/path/to/data scripts/base2new_test.sh DATASET SEED SUB [extra train.py args]
# Loads ${OUTPUT}/base2new/train_base/<...>/seed${SEED} (exactly the train script's folder) at epoch
# LOADEP (default: its latest checkpoint) and writes ${OUTPUT}/base2new/test_${SUB}/<...>/seed${SEED}.
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, LOADEP, PYTHON (see scripts/_common.sh), SWEEP_ARGS.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 3 ] || die "usage: $0 DATASET SEED SUB(new|base) [extra train.py args]"
DATASET=$1
SEED=$2
SUB=$3
shift 3
case "$SUB" in new|base|all) ;; *) die "SUB must be new, base or all, got '${SUB}'" ;; esac
check_inputs "$DATASET"
MODEL_DIR=${OUTPUT}/base2new/train_base/${DATASET}/shots_${SHOTS}/${TRAINER}/${CFG}/seed${SEED}
model_epoch "$MODEL_DIR" "run base2new_train.sh ${DATASET} ${SEED} first" > /dev/null
read -r -a sweep_args <<< "${SWEEP_ARGS:-}"
loadep=()
[ -z "$LOADEP" ] || loadep=(--load-epoch "$LOADEP")
exec "${PY[@]}" -m prometar sweep base2new --phase test --test-sub "$SUB" --data "$DATA" --output "$OUTPUT" \
    --trainer "$TRAINER" --configs "$CFG" --shots "$SHOTS" --datasets "$DATASET" --seeds "$SEED" \
    --python "${PY[*]}" --no-report ${loadep[@]+"${loadep[@]}"} ${sweep_args[@]+"${sweep_args[@]}"} -- "$@"
