#!/usr/bin/env bash
# Full base-to-new benchmark: for each dataset and seed, train on base classes then test on new
# classes (finished runs are skipped), then write the report (python -m prometar.report ${OUTPUT}).
# Usage: DATA=/path/to/data scripts/base2new_all.sh [extra train.py args]
# Env: DATASETS (default: the 11 benchmarks), SEEDS (default "1 2 3"), and those of scripts/_common.sh.
# A failing run is reported and the loop goes on; the exit status is 1 if any run failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "${HERE}/_common.sh"
export DATA OUTPUT TRAINER CFG SHOTS LOADEP PYTHON="${PY[*]}"

DATASETS=${DATASETS:-"imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"}
SEEDS=${SEEDS:-"1 2 3"}
failed=()
for dataset in $DATASETS; do
    for seed in $SEEDS; do
        if bash "${HERE}/base2new_train.sh" "$dataset" "$seed" "$@"; then
            bash "${HERE}/base2new_test.sh" "$dataset" "$seed" new "$@" || failed+=("test_new ${dataset} seed${seed}")
        else
            failed+=("train_base ${dataset} seed${seed}")
        fi
    done
done

"${PY[@]}" -m prometar.report "$OUTPUT" || echo "base2new_all.sh: the report could not be written" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "Failed runs (${#failed[@]}):" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
