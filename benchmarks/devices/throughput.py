"""Training throughput on one device and on a data-parallel mesh of several, side by side.

    python benchmarks/devices/throughput.py [--devices 2] [--repeats 3] > output.md

Each configuration is fitted once to compile, then timed ``--repeats`` times for each
device count, alternating, and the median steps per second are reported with their
ratio. On a CPU the devices are host devices (``XLA_FLAGS=
--xla_force_host_platform_device_count=N``, set here before JAX starts): they share the
same cores, so this measures the cost of splitting the batch, not a speed-up; on several
GPUs the same script measures the speed-up.
"""

import argparse
import os
import statistics
import sys
import time
import warnings


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.devices}".strip()
        )
    warnings.simplefilter("ignore")
    import jax
    import numpy as np

    import mongeflow as mf
    from mongeflow.bench.report import machine, machine_line
    from mongeflow.devices import data_mesh

    rng = np.random.default_rng(0)
    configs = []
    for d, n, batch in ((16, 20_000, 1024), (64, 20_000, 1024)):
        x = rng.standard_normal((n, d))
        y = np.tanh(x) @ rng.standard_normal((d, d)) / np.sqrt(d) + x
        problem = mf.data_problem(x, target=mf.EmpiricalTarget(y))
        configs.append(
            (f"adam + energy, d = {d}, batch {batch}", problem, "adam", "energy", batch, 60)
        )
        configs.append(
            (
                f"explicit + drift (automatic), d = {d}, batch {batch}",
                problem,
                None,
                "drift",
                batch,
                3,
            )
        )
    meshes = {1: None, args.devices: data_mesh(args.devices)}
    print(f"# Steps per second on 1 and {args.devices} devices\n")
    print(machine_line(machine()) + f" Devices: {jax.devices()}.\n")
    print(
        "Command: `python benchmarks/devices/throughput.py "
        f"--devices {args.devices} --repeats {args.repeats}`\n"
    )
    print(f"| fit | 1 device, steps/s | {args.devices} devices, steps/s | ratio |")
    print("|---|---|---|---|")
    for label, problem, scheme, divergence, batch, steps in configs:
        rates = {k: [] for k in meshes}

        fit_args = dict(
            steps=steps,
            batch_size=batch,
            final_eval_size=0,
            keep_best=False,
            patience=None,
            fallback=False,
            log_every=steps,
        )

        def once(mesh, problem=problem, scheme=scheme, divergence=divergence, kw=fit_args):
            return mf.fit(problem, scheme, divergence, mesh=mesh, **kw)

        for mesh in meshes.values():
            once(mesh)  # compile
        for _ in range(args.repeats):
            for k, mesh in meshes.items():
                tic = time.perf_counter()
                res = once(mesh)
                jax.block_until_ready(res.potentials)
                rates[k].append(steps / (time.perf_counter() - tic))
        one, many = (statistics.median(rates[k]) for k in meshes)
        print(f"| {label} | {one:.3g} | {many:.3g} | {many / one:.2f} |", flush=True)
    print(
        "\nEach timing is a whole `mf.fit` call (compiled already): the training steps, "
        "one history record and the linear-map baseline; the medians of "
        f"{args.repeats} runs, alternated."
    )
    if jax.devices()[0].platform == "cpu":
        print(
            "\nOn a CPU the devices are host devices sharing the same cores: a ratio "
            "below 1 is the cost of splitting each batch and reducing across devices, "
            "not a measure of the speed-up several GPUs would give. This shows that the "
            "split runs (the tests show it gives the same map), not that it is faster."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
