#!/usr/bin/env bash
# Cross-dataset / domain generalisation, step 2: evaluate the ImageNet model of xd_train.sh on DATASET
# (imagenetv2, imagenet_sketch, imagenet_a, imagenet_r, or any other dataset config), all classes, full test
# split (no few-shot); a thin wrapper over `prometar sweep xd --phase test` (skips a finished run of the same
# config and model file; re-runs an evaluation of a model trained again since).
# Usage: DATA=/path/to/data scripts/xd_test.sh DATASET SEED [extra train.py args]
# Loads ${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED} at LOADEP (default: latest) and
# writes ${OUTPUT}/evaluation/${TRAINER}/${CFG}_${SHOTS}shots/${DATASET}/seed${SEED}.
# Env: DATA, TRAINER, CFG, OUTPUT, SHOTS, LOADEP, PYTHON (see scripts/_common.sh), SWEEP_ARGS.
# All targets and seeds at once: prometar sweep xd --data DATA (training included).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

[ $# -ge 2 ] || die "usage: $0 DATASET SEED [extra train.py args]"
DATASET=$1
SEED=$2
shift 2
check_inputs "$DATASET"
model_epoch "${OUTPUT}/imagenet/${TRAINER}/${CFG}_${SHOTS}shots/seed${SEED}" "run xd_train.sh ${SEED} first" > /dev/null
read -r -a sweep_args <<< "${SWEEP_ARGS:-}"
loadep=()
[ -z "$LOADEP" ] || loadep=(--load-epoch "$LOADEP")
exec "${PY[@]}" -m prometar sweep xd --phase test --data "$DATA" --output "$OUTPUT" --trainer "$TRAINER" \
    --configs "$CFG" --shots "$SHOTS" --datasets "$DATASET" --seeds "$SEED" --python "${PY[*]}" \
    ${loadep[@]+"${loadep[@]}"} ${sweep_args[@]+"${sweep_args[@]}"} -- "$@"
