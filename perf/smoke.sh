#!/usr/bin/env bash
# Every benchmark of perf/ once, on tiny inputs (--smoke): a benchmark that no longer
# runs fails here. No figure is judged. As root, with pyrt and pyperf installed
# (tests/install-deps.sh). Each one's output goes to $PYRT_SMOKE_LOGS (a temporary
# directory by default) and is printed when it fails.
set -uo pipefail
cd "$(dirname "$0")"
logs=${PYRT_SMOKE_LOGS:-$(mktemp -d /tmp/pyrt-perf-smoke.XXXXXX)}
python=${PYTHON:-python3}
failed=0
for bench in bench_*.py; do
    start=$(date +%s)
    if timeout 900 "$python" "$bench" --smoke >"$logs/${bench%.py}.log" 2>&1; then
        echo "perf/$bench --smoke: ok ($(( $(date +%s) - start )) s)"
    else
        echo "perf/$bench --smoke: FAILED (exit $?), its output:" >&2
        tail -n 40 "$logs/${bench%.py}.log" >&2
        failed=1
    fi
done
exit $failed
