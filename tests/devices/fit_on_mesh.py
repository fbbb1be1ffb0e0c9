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


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
