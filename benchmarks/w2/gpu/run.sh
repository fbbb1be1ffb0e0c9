#!/usr/bin/env bash
# The W2 benchmark's pairs through the command line on a GPU machine, no tuning flag (then a
# few flags), as benchmarks/w2/cli/run.sh does on the CPU: fit on 2^16 unpaired rows per
# side, `mongeflow apply` to 4 096 fresh source rows, L2-UVP against T*.
# Usage: bash benchmarks/w2/gpu/run.sh   (from the repository root; mongeflow importable,
# e.g. PYTHONPATH=src with its dependencies installed; JAX with CUDA picks the GPU itself).
set -uo pipefail
py=${PYTHON:-python3}
run() {
  d=$1; shift
  w=${WORK:-/tmp/w2gpu}/$d; mkdir -p "$w"
  [ -f "$w/x.npy" ] || "$py" benchmarks/w2/cli/prep.py "$d" "$w" || exit 1
  rm -rf "$w/run"
  "$py" -m mongeflow fit --source "$w/x.npy" --target "samples:$w/y.npy" --out "$w/run" --quiet "$@" \
    > "$w/fit.out" 2> "$w/fit.err" || { tail -30 "$w/fit.err"; return; }
  "$py" -m mongeflow apply "$w/run" --input "$w/held_x.npy" --output "$w/mapped.npy" > /dev/null || return
  echo "d=$d [$*]: $("$py" benchmarks/twosample/cli/score.py "$w"); $("$py" -c "import json; m = json.load(open('$w/run/metrics.json')); print('fit wall', round(m['wall_time_s']), 's, linear kept', m.get('linear_kept'))")"
}
"$py" -c "import jax; print('jax', jax.__version__, jax.devices())"
for d in 16 64 8; do run "$d"; done
run 64 --batch-size 1024
run 64 --bidirectional --steps 48000
run 16 --batch-size 4096
run 8 --batch-size 4096
