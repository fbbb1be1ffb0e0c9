#!/usr/bin/env bash
# The W2 pair at one d through the command line, 12 000 semi-dual steps, at several rates:
# L2-UVP on 4 096 fresh source rows, and the held-out energy distance at each record.
# Usage: bash rates.sh D RATE [RATE ...]   (the automatic rate of the semi-dual fit is 0.01)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
d=$1; shift
work=$(mktemp -d)
python "$here/prep.py" "$d" "$work"
for lr in "$@"; do
  out=$work/run-lr$lr
  start=$(date +%s)
  mongeflow fit --source "$work/x.npy" --target "samples:$work/y.npy" --out "$out" --quiet \
    --steps 12000 --learning-rate "$lr" > /dev/null 2> "$out.err"
  echo "d = $d, rate $lr: exit $? in $(( $(date +%s) - start )) s"
  mongeflow apply "$out" --input "$work/held_x.npy" --output "$work/mapped.npy" > /dev/null 2>&1 \
    && python "$here/../../twosample/cli/score.py" "$work"
  echo "  step,energy_distance: $(cut -d, -f1,6 "$out/history.csv" | tail -n +2 | tr '\n' ' ')"
  python -c "import json; m = json.load(open('$out/metrics.json')); print('  linear_kept', m.get('linear_kept'), 'stopped_at', m.get('stopped_at'), 'best_step', m.get('best_step'))"
  grep -h "warning" "$out.err" | cut -c1-400 | sed 's/^/  /'
done
