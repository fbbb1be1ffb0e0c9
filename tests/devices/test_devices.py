"""Training over several devices and processes gives the map of one device.

The device count of a CPU and a process group are fixed when JAX starts, so each check
runs in a fresh process: two host devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``, and two processes joined through
:func:`jax.distributed.initialize` with CPU (gloo) collectives, one device each.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("fit_on_mesh.py")
ROOT = Path(__file__).parents[2]
#: float64 fits: one device and two differ only in the order of floating-point sums
TOLERANCE = 1e-8


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _run(args, env, timeout=300):
    return subprocess.run(
        [sys.executable, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("devices") / "two.npz"
    done = _run([SCRIPT, out, "devices"], _env(2))
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


def test_a_step_on_two_devices_splits_the_batch_and_gives_the_gradient_of_one(tmp_path):
    """One compiled draw, loss and gradient (the energy distance's kernel sums over rows
    split across the devices) on two host devices, against one device."""
    out = tmp_path / "step.npz"
    done = _run([SCRIPT, out, "step"], _env(2))
    assert done.returncode == 0, done.stderr[-3000:]
    r = dict(np.load(out))
    assert int(r["devices"]) == 2 and int(r["batch_devices"]) == 2
    np.testing.assert_array_equal(r["one_0"], r["two_0"])  # the same rows drawn
    assert np.all(np.isfinite(r["one_2"])) and np.max(np.abs(r["one_2"])) > 0
    for i in (1, 2):
        np.testing.assert_allclose(r[f"two_{i}"], r[f"one_{i}"], rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_the_batch_is_split_over_the_mesh(two_devices):
    assert int(two_devices["devices"]) == 2
    assert int(two_devices["batch_devices"]) == 2


@pytest.mark.slow  # their fixture: 45 s cold on 2 cores; `pytest -m slow` runs it
@pytest.mark.parametrize("run", ["adam", "explicit"])
def test_two_devices_give_the_map_of_one(two_devices, run):
    one, two = two_devices[f"{run}_one"], two_devices[f"{run}_mesh"]
    assert np.all(np.isfinite(one))
    # the mesh fit ran on both devices, and both fits trained
    assert int(two_devices[f"{run}_one_devices"]) == 1
    assert int(two_devices[f"{run}_mesh_devices"]) == 2
    for label in ("one", "mesh"):
        assert np.all(two_devices[f"{run}_{label}_stopped"] < 0)
    if run == "adam":  # a loss that is a value: it fell
        loss = two_devices["adam_one_loss"]
        assert loss[-1] < 0.8 * loss[0], loss
        np.testing.assert_allclose(two_devices["adam_mesh_loss"], loss, rtol=1e-6)
    np.testing.assert_allclose(two, one, rtol=0, atol=TOLERANCE * (1 + np.max(np.abs(one))))


@pytest.mark.slow  # their fixture: 45 s cold on 2 cores; `pytest -m slow` runs it
def test_a_checkpoint_of_two_devices_resumes_on_one(two_devices):
    assert int(two_devices["interrupted_at"]) == 10
    one = two_devices["adam_one"]
    np.testing.assert_allclose(
        two_devices["resumed_on_one"], one, rtol=0, atol=TOLERANCE * (1 + np.max(np.abs(one)))
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(mode: str, out) -> None:
    """The script in ``mode`` by two processes on localhost (gloo), one CPU device each."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), str(out), mode, str(i), str(port)],
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_two_processes_give_the_map_of_one_device(two_devices, tmp_path):
    """Two processes on localhost (gloo), one CPU device each, the mesh spanning both."""
    out = tmp_path / "processes.npz"
    _two_processes("processes", out)
    both = dict(np.load(out))
    assert int(both["devices"]) == 2 and int(both["batch_devices"]) == 2
    assert int(both["adam_mesh_devices"]) == 2
    one = two_devices["adam_one"]
    np.testing.assert_allclose(
        both["adam_mesh"], one, rtol=0, atol=TOLERANCE * (1 + np.max(np.abs(one)))
    )


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_two_processes_each_holding_its_own_rows_give_the_map_of_all_the_rows(tmp_path):
    """Each process reads its own rows: no process holds another's training rows, the
    standardisation is that of every row, and the map is the one-device fit's on them all."""
    out = tmp_path / "rows"
    _two_processes("rows", out)
    first, second = (dict(np.load(f"{out}.{i}.npz")) for i in range(2))
    for r in (first, second):
        # 900 and 901 training rows (1 000 and 1 001, 10 % held out): 900 each, one left
        # out; of the target's 630 and 720, 630 each
        assert not r["fully_addressable"] and int(r["rows"]) == 1800
        assert r["local_rows"].tolist() == [900] and r["local_target_rows"].tolist() == [630]
        assert int(r["validation_rows"]) == 200  # both processes' held-out rows
        for stat in ("shift", "scale", "target_shift"):
            np.testing.assert_allclose(r[stat], r[f"expected_{stat}"], rtol=1e-12)
        scale = 1 + np.max(np.abs(r["one"]))
        np.testing.assert_allclose(r["split"], r["one"], rtol=0, atol=TOLERANCE * scale)
    assert int(first["left_out"]) == 0 and int(second["left_out"]) == 2  # data, target
    # the compiled draw sends no device the dataset: each gathers what it holds, and the
    # batch is summed over the devices
    assert int(first["moves_rows"]) == 0 and int(first["sums_batch"]) >= 1
    np.testing.assert_allclose(first["split"], second["split"], rtol=0, atol=1e-12)


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_the_command_line_splits_over_the_devices_asked(tmp_path):
    env = _env(2)
    base = ["-m", "mongeflow", "fit", "--problem", "gaussian", "--dim", "2", "--steps", "20"]
    done = _run([*base, "--devices", "2", "--out", tmp_path / "two"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cpu (2 of 2 devices)" in done.stderr
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["device"] == "cpu (2 of 2 devices)"
    bad = _run([*base, "--devices", "3", "--out", tmp_path / "three"], env)
    assert bad.returncode == 2
    assert "--devices must be between 1 and the 2 local cpu device(s), got 3" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "three").exists()


def test_rows_held_per_process_on_one_process_are_the_problem_of_all_rows(tmp_path):
    """One process holding its rows: the same problem as without a mesh (statistics,
    split, rows), its rows placed on the mesh; a target file is refused (each process
    gives its own rows)."""
    import mongeflow as mf
    from mongeflow.devices import data_mesh
    from mongeflow.io import InputError

    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 3)) * np.array([1.0, 4.0, 0.2]) + 7.0
    y = rng.standard_normal((250, 3)) + 1.0
    whole = mf.data_problem(x, target=mf.EmpiricalTarget(y))
    mesh = data_mesh(1)
    held = mf.data_problem(x, target=mf.EmpiricalTarget(y), mesh=mesh)
    for a, b in [
        (whole.shift, held.shift),
        (whole.target_shift, held.target_shift),
        (whole.source.data, held.source.data),
        (whole.target.data, held.target.data),
        (whole.validation, held.validation),
        (whole.validation_target, held.validation_target),
    ]:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert whole.scale == held.scale
    assert held.source.data.sharding.mesh == mesh
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(InputError, match="each process gives its own target rows"):
        mf.data_problem(x, target=f"samples:{tmp_path / 'y.npy'}", mesh=mesh)
