"""Run by tests/devices/test_devices.py in a fresh process (the device count and the
process group are fixed when JAX starts): fits on one device and on a mesh, writes the
maps' outputs on fixed points to OUT.npz."""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)


def main(out: str, mode: str, process_id: int = -1, port: int = 0) -> None:
    import equinox as eqx
    import numpy as np

    import mongeflow as mf
    from mongeflow.devices import data_mesh, data_sharding, initialize
    from mongeflow.divergences.base import make_task

    if mode == "processes":
        initialize(f"localhost:{port}", 2, process_id)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 2))
    y = x @ np.array([[1.5, 0.4], [0.0, 0.7]]) + np.tanh(x) + 1.0
    problem = mf.data_problem(x, target=mf.EmpiricalTarget(y))
    points = np.asarray(jax.random.normal(jax.random.key(9), (300, 2)), np.float64)
    runs = {
        # a gradient scheme on a sample divergence (kernel sums over the split batch)
        "adam": dict(scheme=mf.Adam(learning_rate=0.03), divergence="energy", steps=25),
        # the explicit scheme: its inner solver draws fresh batches from the loop's sampler
        "explicit": dict(
            scheme=mf.Explicit(tau=0.2, inner=mf.AdamInner(steps=4)), divergence="drift", steps=3
        ),
    }
    meshes = {"one": None, "mesh": data_mesh()}
    if mode == "processes":  # the explicit scheme's sharding is checked on two devices
        meshes = {"mesh": data_mesh()}
        del runs["explicit"]
    results = {}
    for run, kw in runs.items():
        for label, mesh in meshes.items():
            # the fit's monitors, its comparison with the linear map and its final
            # figures run on the mesh too; records every 5 steps, so chunks of several
            res = mf.fit(
                problem,
                **kw,
                final_eval_size=500,
                eval_size=256,
                log_every=5 if run == "adam" else 1,
                patience=None,
                fallback=False,
                mesh=mesh,
            )
            results[f"{run}_{label}"] = np.asarray(res.map(0).transport(points))
            results[f"{run}_{label}_loss"] = np.asarray(res.history["loss"])[:, 0]
            results[f"{run}_{label}_stopped"] = np.asarray(res.stopped_at)
            leaf = jax.tree_util.tree_leaves(eqx.filter(res.potentials, eqx.is_array))[0]
            results[f"{run}_{label}_devices"] = np.asarray(len(leaf.sharding.device_set))
    if mode == "devices":
        # a checkpoint of a run on two devices resumes on one: stopped (Ctrl-C) after its
        # second record, resumed without a mesh, it ends on the uninterrupted map
        from mongeflow.fit import FitInterrupted
        from mongeflow.runs import Checkpoint

        class Interrupt(mf.Callback):
            def on_chunk(self, run, state):
                if state.step >= 10:
                    raise KeyboardInterrupt

        path = Path(out).with_name("checkpointed")
        kw = dict(runs["adam"], final_eval_size=500, eval_size=256, log_every=5)
        kw.update(patience=None, fallback=False)
        try:
            mf.fit(problem, **kw, mesh=data_mesh(), callbacks=[Checkpoint(path), Interrupt()])
        except FitInterrupted as err:
            results["interrupted_at"] = np.asarray(err.step)
        res = mf.fit(problem, **kw, callbacks=[Checkpoint(path, resume=True)])
        results["resumed_on_one"] = np.asarray(res.map(0).transport(points))
    mesh = data_mesh()
    task = make_task(problem, mf.Drift(), 64, data_sharding(mesh))
    batch = eqx.filter_jit(lambda t, k: t.sample(k))(task, jax.random.key(0))
    results["batch_devices"] = np.asarray(len(batch.x.sharding.device_set))
    results["devices"] = np.asarray(mesh.size)
    if process_id <= 0:
        np.savez(out, **results)


def one_step(out: str) -> None:
    """On two host devices: a batch drawn on the mesh is split over both, and the energy
    distance's loss and gradient (kernel sums over the split rows) are those of one device."""
    import equinox as eqx
    import numpy as np

    import mongeflow as mf
    from mongeflow.devices import data_mesh, data_sharding, replicate
    from mongeflow.divergences.base import make_task
    from mongeflow.maps import default_potential

    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 2))
    problem = mf.data_problem(x, target=mf.EmpiricalTarget(np.tanh(x) + x @ [[1.5, 0], [0.4, 1]]))
    potential = default_potential(2)(jax.random.key(1))
    mesh = data_mesh()

    def figures(task, potential, key):
        batch = task.sample(key)
        loss, grad = task.loss_and_grad(potential, batch, key)
        leaves = jax.tree_util.tree_leaves(eqx.filter(grad, eqx.is_array))
        flat = jax.numpy.concatenate([jax.numpy.ravel(a) for a in leaves])
        return batch.x, loss, flat

    key = jax.random.key(2)
    one = eqx.filter_jit(figures)(make_task(problem, mf.EnergyDistance(), 128), potential, key)
    task = replicate(make_task(problem, mf.EnergyDistance(), 128, data_sharding(mesh)), mesh)
    two = eqx.filter_jit(figures)(task, replicate(potential, mesh), key)
    np.savez(
        out,
        devices=np.asarray(mesh.size),
        batch_devices=np.asarray(len(two[0].sharding.device_set)),
        **{f"one_{i}": np.asarray(a) for i, a in enumerate(one)},
        **{f"two_{i}": np.asarray(a) for i, a in enumerate(two)},
    )


def rows_of_each_process(out: str, process_id: int, port: int) -> None:
    """Two processes, each holding its own rows (1 000 and 1 001 of the data, 700 and 800 of
    the target samples): the fit on them, and one fit on a single device of the problem
    they make together (every row, the same statistics and held-out rows)."""
    import warnings

    import equinox as eqx
    import numpy as np
    from jax.experimental import multihost_utils

    import mongeflow as mf
    from mongeflow.devices import data_mesh, initialize
    from mongeflow.io import DataWarning, _seed, _split
    from mongeflow.problems import EmpiricalSource, EmpiricalTarget, Standardiser

    initialize(f"localhost:{port}", 2, process_id)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2001, 2)) * np.array([2.0, 0.5]) + 3.0
    y = rng.standard_normal((1500, 2)) @ np.array([[1.5, 0.4], [0.0, 0.7]]) - 1.0
    xs, ys = (x[:1000], x[1000:]), (y[:700], y[700:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problem = mf.data_problem(
            xs[process_id], target=mf.EmpiricalTarget(ys[process_id]), mesh=data_mesh()
        )
    left_out = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    source, target = problem.source.data, problem.target.data
    whole = {
        "x": np.asarray(multihost_utils.process_allgather(source, tiled=True)),
        "y": np.asarray(multihost_utils.process_allgather(target, tiled=True)),
    }
    # the statistics every process computed: those of both processes' training rows
    train = [_split(a, 0.1, _seed(0, p), "data")[0] for p, a in enumerate(xs)]
    rows = [_split(a, 0.1, _seed(1, p), "target samples")[0] for p, a in enumerate(ys)]
    expected = Standardiser.from_samples(np.concatenate(train), np.concatenate(rows))
    kw = dict(scheme=mf.Adam(learning_rate=0.03), divergence="energy", steps=25)
    kw.update(final_eval_size=500, eval_size=256, log_every=5, patience=None, fallback=False)
    split = mf.fit(problem, **kw, mesh=data_mesh())
    together = mf.Problem(
        "together",
        EmpiricalSource(whole["x"]),
        EmpiricalTarget(whole["y"]),
        shift=problem.shift,
        scale=problem.scale,
        validation=problem.validation,
        validation_target=problem.validation_target,
        target_shift=problem.target_shift,
    )
    one = mf.fit(together, **kw)
    points = np.asarray(jax.random.normal(jax.random.key(9), (300, 2)), np.float64) + 2.0
    # the compiled draw of a batch gathers the rows each device holds and sums the batch
    # over the devices: no device is sent the dataset
    from mongeflow.devices import data_sharding
    from mongeflow.divergences.base import make_task

    task = make_task(problem, mf.EnergyDistance(), 64, data_sharding(data_mesh()))
    arrays, static = eqx.partition(task, eqx.is_array)
    draw = jax.jit(lambda a, k: eqx.combine(a, static).sample(k))
    program = draw.lower(arrays, jax.random.key(0)).compile()
    moves = [
        line
        for line in program.as_text().splitlines()
        if ("all-gather(" in line or "all-to-all(" in line) and "[1800," in line
    ]
    results = {
        "moves_rows": np.asarray(len(moves)),
        "sums_batch": np.asarray(program.as_text().count("all-reduce(")),
        "split": np.asarray(split.map(0).transport(points)),
        "one": np.asarray(one.map(0).transport(points)),
        "local_rows": np.asarray([s.data.shape[0] for s in source.addressable_shards]),
        "local_target_rows": np.asarray([s.data.shape[0] for s in target.addressable_shards]),
        "fully_addressable": np.asarray(source.is_fully_addressable),
        "rows": np.asarray(source.shape[0]),
        "validation_rows": np.asarray(problem.validation.shape[0]),
        "shift": np.asarray(problem.shift),
        "expected_shift": np.asarray(expected.shift),
        "scale": np.asarray(problem.scale),
        "expected_scale": np.asarray(expected.scale),
        "target_shift": np.asarray(problem.target_shift),
        "expected_target_shift": np.asarray(expected.target_shift),
        "left_out": np.asarray(len(left_out)),
    }
    np.savez(f"{out}.{process_id}.npz", **results)


if __name__ == "__main__":
    if sys.argv[2] == "rows":
        rows_of_each_process(sys.argv[1], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[2] == "step":
        one_step(sys.argv[1])
    else:
        main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
