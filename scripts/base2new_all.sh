#!/usr/bin/env bash
# Full base-to-new benchmark: for each dataset and seed, train on base classes then test on new classes, then
# write the report; a thin wrapper over `prometar sweep base2new` (finished runs are skipped, unfinished ones
# resume, a failed run is retried once, then listed with its log; see `prometar sweep --help`).
# Usage: DATA=/path/to/data scripts/base2new_all.sh [extra train.py args]
# Env: DATASETS (default: the 11 base-to-new benchmarks, `prometar data --list`), SEEDS (default "1 2 3"), SWEEP_ARGS (more `prometar sweep` flags,
# e.g. "--gpus 0,1 --jobs-per-gpu 2", "--workers 2" or "--backend slurm --partition gpu --gpus-per-job 1"),
# and those of scripts/_common.sh. The exit status is 1 if any run failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "${HERE}/_common.sh"
[ -n "${DATA:-}" ] || die "set DATA to the dataset root folder (e.g. DATA=/data/coop)"

read -r -a datasets <<< "${DATASETS:-}"   # empty: the sweep's default, the base-to-new datasets of the dataset table
read -r -a seeds <<< "${SEEDS:-1 2 3}"
read -r -a sweep_args <<< "${SWEEP_ARGS:-}"
loadep=()
[ -z "$LOADEP" ] || loadep=(--load-epoch "$LOADEP")
exec "${PY[@]}" -m prometar sweep base2new --data "$DATA" --output "$OUTPUT" --trainer "$TRAINER" --configs "$CFG" \
    --shots "$SHOTS" ${datasets[@]+--datasets "${datasets[@]}"} --seeds "${seeds[@]}" --python "${PY[*]}" \
    ${loadep[@]+"${loadep[@]}"} ${sweep_args[@]+"${sweep_args[@]}"} -- "$@"
