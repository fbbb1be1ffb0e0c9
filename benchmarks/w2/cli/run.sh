#!/usr/bin/env bash
# The W2 benchmark's pairs through the command line, no tuning flag: fit on 2^16 unpaired
# rows per side, `mongeflow apply` to 4 096 fresh source rows, L2-UVP against T*.
# Usage: [SEED=N] [ROWS=N] [FLAGS="..."] [PYTHON=...] bash run.sh [D ...]   (default: 2 4 8
# 16; the fit's --seed, default 0; training rows per side, default 2^16; flags added to
# `mongeflow fit`, default none; the Python that runs mongeflow, default python); writes
# into a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python}
dims=("$@")
[ ${#dims[@]} -gt 0 ] || dims=(2 4 8 16)
for d in "${dims[@]}"; do
  work=$(mktemp -d)
  "$py" "$here/prep.py" "$d" "$work" "${ROWS:-65536}"
  # shellcheck disable=SC2086
  "$py" -m mongeflow fit ${FLAGS:-} --source "$work/x.npy" --target "samples:$work/y.npy" --out "$work/run" --seed "${SEED:-0}" --quiet > /dev/null \
    2> "$work/fit.err" || { cat "$work/fit.err"; exit 1; }
  "$py" -m mongeflow apply "$work/run" --input "$work/held_x.npy" --output "$work/mapped.npy" > /dev/null
  kept=$("$py" -c "import json; m = json.load(open('$work/run/metrics.json')); print('linear map kept' if m.get('linear_kept') else f\"trained map kept (step {m['best_step'][0]} of {m['last_step']})\", round(m['wall_time_s']), 's')")
  echo "d = $d${FLAGS:+ [$FLAGS]}: $("$py" "$here/../../twosample/cli/score.py" "$work"), $kept"
  grep -h "warning" "$work/fit.err" | sed 's/^/    /' || true
done
