#!/usr/bin/env bash
# Install Dassl.pytorch for the Dassl half of the test suite, from an unmodified source archive (Dassl is not on
# PyPI and CI reaches only the package registries). The archive is looked for in $PROMETAR_DASSL_ARCHIVE, then in
# the shared/vendor/ folder beside the checkout. Dassl's import-time dependencies come from PyPI; --no-deps keeps
# the installed torch. Exit status: 0 when `import dassl` works afterwards, 1 otherwise (the reason on stderr;
# the Dassl tests then skip and say why).
set -uo pipefail
say() { echo "dassl-install: $*" >&2; }

if python -c "import dassl.engine" >/dev/null 2>&1; then
    say "Dassl already importable ($(python -c 'import dassl; print(dassl.__version__)'))"
    exit 0
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=${PROMETAR_DASSL_ARCHIVE:-}
if [ -z "$archive" ]; then
    for candidate in "$repo"/../shared/vendor/Dassl.pytorch-*.tar.gz "$repo"/shared/vendor/Dassl.pytorch-*.tar.gz; do
        [ -f "$candidate" ] && archive=$candidate && break
    done
fi
[ -n "$archive" ] && [ -f "$archive" ] || { say "no Dassl.pytorch archive found (set PROMETAR_DASSL_ARCHIVE)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$archive" -C "$work" || { say "cannot unpack $archive"; exit 1; }
src=$(find "$work" -maxdepth 2 -name setup.py -printf '%h\n' | head -n 1)
[ -n "$src" ] || { say "$archive holds no setup.py"; exit 1; }
say "installing Dassl from $archive"
python -m pip install -q --no-deps --no-build-isolation "$src" || { say "pip install of $src failed"; exit 1; }
python -m pip install -q gdown tensorboard pandas scikit-learn tabulate tqdm yacs \
    && python -m pip install -q --no-deps wilds==1.2.2 || { say "Dassl's dependencies failed to install"; exit 1; }
python -c "import dassl.engine, dassl.data, dassl.utils; print('dassl-install: Dassl', dassl.__version__, 'importable')" >&2
