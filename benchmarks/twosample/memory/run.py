"""Peak memory of a two-sample fit with n = 10⁴ samples per side, for each divergence.

Each fit runs as its own ``mongeflow fit --source x.npy --target samples:y.npy`` process
(d = 16, ``dense-pair`` samples, 10 % of each side held out, the default settings but
``--steps``), once with the default batch and once with the whole training set as one
batch (``--batch-size 9000``, 2 steps, 4 inner steps for the drift's explicit scheme):
every step then compares 9 000 pushed points with 9 000 target points, 8.1·10⁷ pairs,
324 MB per float32 matrix if it were held at once; the divergences work in row blocks of
``--block-size`` rows. The figure is the child process's peak resident memory
(``ru_maxrss``).

    python benchmarks/twosample/memory/run.py > benchmarks/twosample/memory/output.txt
"""

import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import mongeflow as mf

D, N, STEPS = 16, 10_000, 5


def peak_mb(args: list[str]) -> tuple[float, float, int]:
    """Run ``args`` in a fresh process; its peak RSS (MiB), wall time (s) and exit code."""
    tic = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest one
    return usage.ru_maxrss / 1024, time.perf_counter() - tic, os.waitstatus_to_exitcode(status)


def main() -> None:
    problem = mf.get_problem("dense-pair", dim=D, n=N, validation=0.0)
    x, y = np.asarray(problem.source.data), np.asarray(problem.target.data)
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores; python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}"
    )
    print(
        f"# dense-pair d = {D}: {x.shape[0]} source and {y.shape[0]} target samples, "
        f"{STEPS} steps with the default batch"
    )
    print("divergence  batch  peak RSS (MiB)  wall (s)  exit")
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x)
        np.save(f"{tmp}/y.npy", y)
        base = [
            sys.executable,
            "-m",
            "mongeflow",
            "fit",
            "--source",
            f"{tmp}/x.npy",
            "--target",
            f"samples:{tmp}/y.npy",
            "--steps",
            str(STEPS),
        ]
        mb, wall, rc = peak_mb([sys.executable, "-c", "import mongeflow, jax; jax.numpy.zeros(1)"])
        print(f"{'(import)':<11} {'':>5} {mb:14.0f} {wall:9.1f} {rc:5d}", flush=True)
        for batch in ("auto", "9000"):
            for name in ("drift", "energy", "mmd", "sinkhorn"):
                out = f"{tmp}/{name}-{batch}"
                args = [*base, "--divergence", name, "--out", out]
                if batch != "auto":  # fewer steps: the peak does not depend on their count
                    args += ["--batch-size", batch, "--steps", "2"]
                    args += ["--inner-steps", "4"] if name == "drift" else []
                mb, wall, rc = peak_mb(args)
                print(f"{name:<11} {batch:>5} {mb:14.0f} {wall:9.1f} {rc:5d}", flush=True)


if __name__ == "__main__":
    main()
