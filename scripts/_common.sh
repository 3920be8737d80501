# Shared settings and helpers of the ProMetaR scripts (sourced, not run). Every script runs its train.py calls
# through `prometar sweep` (the same folders, skip / resume / never-stale rules and argument checks).
# Environment overrides: DATA (dataset root, required to run), TRAINER (ProMetaR), CFG (config name
# without .yaml), OUTPUT (output root, default "output" in the repo root), SHOTS (16), LOADEP
# (epoch to load; default: the latest checkpoint of the model folder), PYTHON (python).
# Relative DATA / OUTPUT given by the caller are resolved against the caller's directory.

_caller_dir=$(pwd)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

_abspath() {  # absolute path of $1 relative to the caller's directory
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "${_caller_dir}/$1" ;;
    esac
}

if [ -n "${OUTPUT:-}" ]; then OUTPUT=$(_abspath "$OUTPUT"); else OUTPUT=output; fi
if [ -n "${DATA:-}" ]; then DATA=$(_abspath "$DATA"); fi
TRAINER=${TRAINER:-ProMetaR}
CFG=${CFG:-vit_b16_c2_ep10_batch4_4+4ctx}
SHOTS=${SHOTS:-16}
LOADEP=${LOADEP:-}
read -r -a PY <<< "${PYTHON:-python}"

cd "$REPO_ROOT"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# resolve_loadep MODEL_DIR: echo LOADEP, or the epoch of the latest checkpoint in MODEL_DIR/<name>/.
resolve_loadep() {
    if [ -n "$LOADEP" ]; then echo "$LOADEP"; return 0; fi
    "${PY[@]}" -m prometar.sweep.state --epoch "$1" 2>/dev/null
}

# check_inputs DATASET: the dataset and method config files must exist; DATA must be set.
check_inputs() {
    [ -n "${DATA:-}" ] || die "set DATA to the dataset root folder (e.g. DATA=/data/coop)"
    [ -f "configs/datasets/$1.yaml" ] || die "no dataset config configs/datasets/$1.yaml"
    [ -f "configs/trainers/${TRAINER}/${CFG}.yaml" ] || die "no method config configs/trainers/${TRAINER}/${CFG}.yaml"
}

# model_epoch MODEL_DIR HINT: echo the epoch to load from MODEL_DIR (LOADEP or its latest checkpoint) after
# checking that the checkpoint file exists; die with HINT (what to run first) otherwise.
model_epoch() {
    local epoch
    epoch=$(resolve_loadep "$1") || die "no checkpoint pointer in $1/*/checkpoint: $2 (or set LOADEP)"
    compgen -G "$1/*/model.pth.tar-${epoch}" > /dev/null \
        || die "no $1/*/model.pth.tar-${epoch}: $2, or set LOADEP to a saved epoch"
    echo "$epoch"
}
