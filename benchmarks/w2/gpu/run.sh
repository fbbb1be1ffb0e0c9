#!/usr/bin/env bash
# The W2 benchmark's pairs through the command line on a GPU machine (JAX with CUDA picks the
# GPU itself): the defaults at d = 16, 64, 8, then a few flags; each row as
# benchmarks/w2/cli/run.sh makes it on the CPU. Usage, from the repository root, mongeflow
# importable by $PYTHON (default python3; e.g. PYTHONPATH=src): bash benchmarks/w2/gpu/run.sh
set -euo pipefail
export PYTHON=${PYTHON:-python3}
cli=$(cd "$(dirname "$0")/../cli" && pwd)
"$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())"
bash "$cli/run.sh" 16 64 8
FLAGS="--batch-size 1024" bash "$cli/run.sh" 64
FLAGS="--bidirectional --steps 48000" bash "$cli/run.sh" 64
FLAGS="--batch-size 4096" bash "$cli/run.sh" 16 8
