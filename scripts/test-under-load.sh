#!/bin/sh
# Usage: scripts/test-under-load.sh [RUNS]
# Runs the whole integration suite RUNS times (3 by default) in a row while
# stress-ng keeps every core busy, as a machine shared with other work is:
# no test may depend on timing. Stops at the first failing run. Needs what
# `make integration` builds, and stress-ng (scripts/test-deps.sh).
set -eu
runs=${1:-3}
cd "$(dirname "$0")/.."
command -v stress-ng >/dev/null || { echo "stress-ng is missing: run scripts/test-deps.sh" >&2; exit 2; }
cores=$(nproc)
stress-ng --cpu "$cores" --quiet &
hog=$!
# Stop the hog (by its pid) however this ends.
trap 'kill "$hog" 2>/dev/null; wait "$hog" 2>/dev/null' EXIT INT TERM
i=1
while [ "$i" -le "$runs" ]; do
  echo "== test-under-load: run $i of $runs, stress-ng --cpu $cores (pid $hog)"
  start=$(date +%s)
  if ! ${MAKE:-make} --no-print-directory integration; then
    echo "== test-under-load: run $i FAILED after $(($(date +%s) - start)) s"
    exit 1
  fi
  echo "== test-under-load: run $i passed in $(($(date +%s) - start)) s"
  i=$((i + 1))
done
echo "== test-under-load: $runs runs passed"
