#!/usr/bin/env bash
# Commits the resumable state of long runs under a checkpoint root every INTERVAL seconds, so
# that an abrupt end of the session loses at most INTERVAL of training (the runs resume from the
# committed last.ckpt with the same command). Only ROOT is committed; .gitignore keeps the logs
# and the per-validation figures out. Stops when every run under ROOT has its `done` marker
# and has been committed.
#   nohup bash scripts/commit_runs.sh reference-runs 1500 > /tmp/commit_runs.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: commit_runs.sh ROOT [INTERVAL_SECONDS]}
interval=${2:-1500}
while true; do
    sleep "$interval"
    for attempt in 1 2 3 4 5; do
        if git add -A -- "$root" 2>/dev/null; then
            steps=$(python3 - "$root" <<'PY'
import csv, glob, sys
parts = []
for path in sorted(glob.glob(f"{sys.argv[1]}/*/*/curves.csv")):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    parts.append(f"{path.split('/')[-2]} step {rows[-1]['step'] if rows else 0}")
print(", ".join(parts))
PY
)
            if git diff --cached --quiet -- "$root"; then
                break
            fi
            git commit -q -m "Reference runs: resumable state ($steps) at $(date -u +%H:%M)" -- "$root" \
                && echo "$(date -u +%FT%T) committed" && break
        fi
        sleep 5
    done
    runs=$(find "$root" -mindepth 2 -maxdepth 2 -type d | wc -l)
    done_runs=$(find "$root" -mindepth 3 -maxdepth 3 -name done | wc -l)
    if [ "$runs" -gt 0 ] && [ "$runs" -eq "$done_runs" ] && git diff --quiet HEAD -- "$root"; then
        echo "$(date -u +%FT%T) every run is done and committed"
        exit 0
    fi
done
