#!/usr/bin/env bash
# How much of the command-line default's error two seeds share: fit the W2 pair at D with each
# SEED through the command line (as ../cli/run.sh, the same 2^16 rows a side), apply each map
# to the same 4 096 fresh source rows, and score each, their average (the gradient of the
# average potential: a Brenier map too) and the distance between two seeds' maps, all in
# L2-UVP units. Usage: [FLAGS="..."] [WORK=DIR] bash seeds.sh D SEED [SEED ...]; keeps its
# files in ${WORK:-/tmp/w2-seeds}/dD, and a seed's map already applied there is not fitted
# again (give another WORK for other FLAGS).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
d=$1; shift
w=${WORK:-/tmp/w2-seeds}/d$d; mkdir -p "$w"
[ -f "$w/x.npy" ] || python "$here/../cli/prep.py" "$d" "$w" 65536
for s in "$@"; do
  [ -f "$w/mapped_$s.npy" ] && continue
  # shellcheck disable=SC2086
  python -m mongeflow fit ${FLAGS:-} --source "$w/x.npy" --target "samples:$w/y.npy" \
    --out "$w/run_$s" --seed "$s" --quiet --overwrite > /dev/null 2> "$w/fit_$s.err" \
    || { cat "$w/fit_$s.err"; exit 1; }
  python -m mongeflow apply "$w/run_$s" --input "$w/held_x.npy" --output "$w/mapped_$s.npy" > /dev/null
done
python - "$w" "$@" <<'PY'
import sys
import numpy as np
w, seeds = sys.argv[1], sys.argv[2:]
y, true = np.load(f"{w}/y.npy"), np.load(f"{w}/held_true.npy")
uvp = lambda m: 100 * np.mean(np.sum((m - true) ** 2, 1)) / np.sum(np.var(y, 0))
maps = {s: np.load(f"{w}/mapped_{s}.npy") for s in seeds}
for s, m in maps.items():
    print(f"seed {s}: L2-UVP {uvp(m):.3f} %")
print(f"average of {len(maps)} maps: L2-UVP {uvp(np.mean(list(maps.values()), 0)):.3f} %")
if len(seeds) > 1:
    a, b = maps[seeds[0]], maps[seeds[1]]
    print(f"seeds {seeds[0]} and {seeds[1]} apart: {uvp(a - b + true):.3f} % (L2-UVP units)")
PY
