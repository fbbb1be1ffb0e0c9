#!/usr/bin/env bash
# Regenerates every figure of the README's tables, with the machine they ran on, into
# benchmarks/readme/output.md. Each line is the command a reader would type.
# Usage: [OUT=FILE] bash benchmarks/readme/run.sh [PART ...]
#   parts: dense posterior twosample w2 iris (default: all; about 35 minutes on a 2-core
#   CPU); OUT: where to write (default benchmarks/readme/output.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(dense posterior twosample w2 iris)
out="${OUT:-$here/output.md}"
work=$(mktemp -d)
{
  echo "# README figures ($(date -u +%Y-%m-%d))"
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;"
  echo "$(python -c 'import jax, mongeflow; print("mongeflow", mongeflow.__version__, "jax", jax.__version__, jax.devices()[0].platform)')."
  echo
} > "$out"
figures() {  # the figures of a fit's metrics.json, the linear map's beside them
  python - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/metrics.json"))
keys = ["l2_uvp", "posterior_mean_error", "posterior_sd_error", "energy_distance"]
parts = [f"{k} {m[k]:.4g} (linear {m.get('linear_' + k, float('nan')):.4g})" for k in keys if m.get(k) is not None]
print("; ".join(parts) + f"; wall time {m['wall_time_s']:.0f} s; linear kept: {m.get('linear_kept')}")
PY
}
for part in "${parts[@]}"; do
  case "$part" in
    dense)
      for d in 16 32 64; do
        mongeflow fit --problem dense-potential --dim "$d" --out "$work/dense$d" --quiet > /dev/null
        echo "- \`mongeflow fit --problem dense-potential --dim $d\`: $(figures "$work/dense$d")" >> "$out"
      done ;;
    posterior)
      for p in logistic-wine logistic-cancer; do
        mongeflow fit --problem "$p" --out "$work/$p" --quiet > /dev/null
        echo "- \`mongeflow fit --problem $p\`: $(figures "$work/$p")" >> "$out"
      done ;;
    twosample)
      echo "- \`bash benchmarks/twosample/cli/run.sh 8 16\` (dense-pair):" >> "$out"
      bash "$root/benchmarks/twosample/cli/run.sh" 8 16 | sed 's/^/  /' >> "$out" ;;
    w2)
      echo "- \`bash benchmarks/w2/cli/run.sh 2 4 8 16 32 64 128\` (the W2 benchmark's pairs):" >> "$out"
      bash "$root/benchmarks/w2/cli/run.sh" 2 4 8 16 32 64 128 | sed 's/^/  /' >> "$out" ;;
    iris)
      echo "- \`python examples/iris.py\`:" >> "$out"
      (cd "$work" && python "$root/examples/iris.py" --out "$work/iris") | tail -3 | sed 's/^/  /' >> "$out" ;;
    *) echo "unknown part $part (dense posterior twosample w2 iris)" >&2; exit 2 ;;
  esac
done
cat "$out"
