#!/usr/bin/env bash
# The two-sample default through the command line, no tuning flag: dense-pair at each D
# (problem seed 0), fit on the training rows, applied to the held-out source rows.
# Usage: [FLAGS="..."] [N=rows] bash run.sh [D ...]   (default: 8 16; FLAGS: added to
# `mongeflow fit`, default none; N: rows a side before 10 % are held out, default 10 000);
# writes into a temporary directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dims=("$@")
[ ${#dims[@]} -gt 0 ] || dims=(8 16)
for d in "${dims[@]}"; do
  work=$(mktemp -d)
  python "$here/prep.py" "$d" 0 "$work" "${N:-10000}"
  # shellcheck disable=SC2086
  mongeflow fit ${FLAGS:-} --source "$work/x.npy" --target "samples:$work/y.npy" --out "$work/run" --quiet
  mongeflow apply "$work/run" --input "$work/held_x.npy" --output "$work/mapped.npy"
  echo "d = $d${N:+, N = $N}${FLAGS:+ [$FLAGS]}: $(python "$here/score.py" "$work"), fit wall time $(python -c "import json; m = json.load(open('$work/run/metrics.json')); print(round(m['wall_time_s']), 's, kept step', m['best_step'][0], 'of', m['last_step'])")"
done
