#!/usr/bin/env bash
# Set everything up, then run mpidist's own tests (unit + real mpirun jobs).
# Most tests start mpirun jobs and wait on them (launches, time limits, a rank's death),
# so they run side by side: MPIDIST_TEST_WORKERS pytest-xdist workers (default 3, on a
# 2-core box too); a file stays on one worker, the cluster tests share one
# (tests/conftest.py). MPIDIST_TEST_WORKERS=0 runs them one after another.
set -eo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../examples/setup_env.sh"
cd "$here/.."
workers="${MPIDIST_TEST_WORKERS:-3}"
parallel=()
[ "$workers" != 0 ] && parallel=(-n "$workers" --dist loadfile)
exec python -m pytest tests "${parallel[@]}" "$@"
