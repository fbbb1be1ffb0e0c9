"""``bench twosample`` and the unconstrained drifting baseline (``--quick``: tiny budgets)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.bench import rows as shared
from mongeflow.bench import twosample
from mongeflow.bench.drift_mlp import drift_mlp_init, fit_drift_mlp
from mongeflow.bench.harness import HeldOut, Setting
from mongeflow.metrics import energy_distance, energy_distance_floor
from mongeflow.problems import get_problem


def _identity_l2_uvp(problem) -> float:
    x = np.asarray(problem.validation, np.float64)
    true = np.asarray(jax.vmap(problem.true_map)(problem.validation), np.float64)
    variance = np.sum(np.var(np.asarray(problem.target.data, np.float64), axis=0))
    return 100.0 * np.mean(np.sum((x - true) ** 2, axis=1)) / variance


@pytest.mark.slow
def test_quick_run_writes_files_and_scores_every_row_on_the_held_out_rows(tmp_path):
    methods = ["identity", "linear", "auto", "drift-mlp"]
    results = twosample.run_twosample(
        tmp_path, dims=(8,), quick=True, methods_=methods, progress=False
    )
    for name in ("results.json", "table.md", "l2_uvp_vs_dim.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    (run,) = results["runs"]
    assert (run["problem"], run["dim"]) == ("dense-pair", 2)  # --quick: d = 2 only
    rows = run["methods"]
    assert list(rows) == [twosample.IDENTITY, twosample.LINEAR, twosample.DRIFT_MLP, "auto"]

    # the identity's figures, computed here from the same problem
    problem = get_problem("dense-pair", dim=2, n=twosample.QUICK_N, seed=0, validation=0.1)
    assert run["n_eval"] == problem.validation.shape[0] == 50
    assert rows["identity"]["l2_uvp"] == pytest.approx(_identity_l2_uvp(problem), rel=1e-5)
    ed = energy_distance(problem.validation, problem.validation_target)
    assert rows["identity"]["energy_distance"] == pytest.approx(float(ed), rel=1e-5)
    floor = float(energy_distance_floor(problem.validation_target, 50))
    assert run["energy_distance_floor"] == pytest.approx(float(floor), rel=1e-6)
    assert rows["identity"]["cosine"] is None  # T − id = 0: undefined
    assert rows["identity"]["wall_time_s"] == 0.0

    for label in (twosample.LINEAR, twosample.DRIFT_MLP, "auto"):
        r = rows[label]
        assert 0.0 < r["cosine"] <= 1.0
        assert r["l2_uvp"] < rows["identity"]["l2_uvp"]
        assert r["energy_distance"] < rows["identity"]["energy_distance"]
        assert r["ed_over_floor"] == pytest.approx(r["energy_distance"] / floor, rel=1e-5)
        assert r["wall_time_s"] > 0
    auto = rows["auto"]["settings"]
    assert auto["scheme"]["name"] == "semidual" and auto["divergence"]["name"] == "energy"
    assert auto["steps"] == round(twosample.AUTO_STEPS * twosample.QUICK_SCALE)

    table = (tmp_path / "table.md").read_text()
    assert "Machine:" in table and "## dense-pair, d = 2" in table
    assert all(label in table for label in rows)
    identity_line = next(line for line in table.splitlines() if line.startswith("| identity"))
    assert "| — |" in identity_line  # the undefined cosine


@pytest.mark.slow
def test_linear_row_is_near_exact_on_gaussian_pairs_with_or_without_pot(tmp_path):
    results = twosample.run_twosample(
        tmp_path,
        dims=(3,),
        problems=("gaussian-pair",),
        methods_=["identity", "linear"],
        n=4000,
        progress=False,
    )
    rows = results["runs"][0]["methods"]
    assert rows[twosample.LINEAR]["l2_uvp"] < 2.0  # the Bures map is T* here
    assert rows[twosample.LINEAR]["cosine"] > 0.99
    assert rows["identity"]["l2_uvp"] > 10 * rows[twosample.LINEAR]["l2_uvp"]

    problem = get_problem("gaussian-pair", dim=3, n=4000)
    held = HeldOut.of(problem)
    setting = Setting(problem)
    ours = twosample.LinearRow(use_pot=False).train(setting)
    assert "linear_baseline" in ours.note
    if twosample.missing_pot() is None:
        pot = twosample.LinearRow(use_pot=True).train(setting)
        assert "POT" in pot.note
        # the same map from the same moments (up to the covariances' 1/n conventions)
        assert held.score(pot.map)["l2_uvp"] == pytest.approx(
            held.score(ours.map)["l2_uvp"], abs=0.02
        )


@pytest.mark.slow  # 7 s cold on 2 cores; `pytest -m slow` runs it
def test_scores_use_the_benchmarks_cosine_and_the_data_units():
    problem = get_problem("dense-pair", dim=3, n=400)
    held = HeldOut.of(problem)
    true = lambda x: jax.vmap(problem.true_map)(x)
    exact = held.score(true)
    assert exact["l2_uvp"] == pytest.approx(0.0, abs=1e-6)
    assert exact["cosine"] == pytest.approx(1.0, abs=1e-6)
    # twice T*'s move: same direction (cos 1); the opposite move: cos −1
    assert held.score(lambda x: x + 2 * (true(x) - x))["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert held.score(lambda x: x - (true(x) - x))["cosine"] == pytest.approx(-1.0, abs=1e-6)
    assert held.score(lambda x: x)["cosine"] is None

    # a map learnt in the standardised coordinates comes back in the data's units
    posed = twosample.Posed.of(problem)
    back = posed.to_data(jax.vmap(posed.problem.true_map))(problem.validation)
    np.testing.assert_allclose(back, true(problem.validation), rtol=1e-4, atol=1e-4)


def test_method_names_and_clear_errors(tmp_path):
    names = twosample.method_names()
    assert names[: len(twosample.GROUPS)] == list(twosample.GROUPS)
    assert {"energy-adam", "mmd-natural", "sinkhorn-implicit", "drift-explicit"} <= set(names)
    assert "drift-explicit-small-tau" in names
    # the drift has no loss value: explicit only; the KL needs the target's potential
    assert not {"drift-adam", "drift-implicit", "drift-natural"} & set(names)
    assert not [n for n in names if n.startswith("kl-")]
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        twosample.run_twosample(tmp_path, methods_=["nope"], progress=False)
    with pytest.raises(ValueError, match="not a two-sample problem"):
        twosample.run_twosample(tmp_path, problems=("dense-potential",), progress=False)
    with pytest.raises(ValueError, match="time cap"):
        twosample.run_twosample(tmp_path, time_cap=0, methods_=["identity"], progress=False)


@pytest.mark.slow
def test_drift_mlp_starts_at_the_identity_and_pushes_the_source_onto_the_target():
    key = jax.random.key(0)
    f = drift_mlp_init(2, key, shift=jnp.ones(2), scale=2.0)
    x = jax.random.normal(key, (5, 2))
    np.testing.assert_array_equal(f.transport(x), x)

    k_x, k_y, k_xv, k_yv = jax.random.split(jax.random.key(1), 4)
    shift = jnp.array([3.0, 0.0])
    x, x_val = jax.random.normal(k_x, (400, 2)), jax.random.normal(k_xv, (300, 2))
    y = shift[None, :] + 0.5 * jax.random.normal(k_y, (400, 2))
    y_val = shift[None, :] + 0.5 * jax.random.normal(k_yv, (300, 2))
    res = fit_drift_mlp(x, y, steps=300, batch_size=128, learning_rate=3e-3)
    assert res.steps == 300 and res.wall_time_s > 0 and np.all(np.isfinite(res.losses))
    before = float(energy_distance(x_val, y_val))
    after = float(energy_distance(res.map.transport(x_val), y_val))
    assert after < 0.1 * before


def test_drift_mlp_rejects_bad_input():
    x = jnp.zeros((10, 2))
    with pytest.raises(ValueError, match="must be"):
        fit_drift_mlp(x, jnp.zeros((10, 3)))
    with pytest.raises(ValueError, match="steps"):
        fit_drift_mlp(x, x, steps=0)
    with pytest.raises(ValueError, match="widths"):
        drift_mlp_init(2, jax.random.key(0), widths=(8, 4))


@pytest.mark.slow
def test_quick_run_of_the_outside_solvers_and_the_drift_rows(tmp_path):
    methods = ["entropic-map", "neural-dual", "monge-gap", "drift-explicit"]
    if twosample.missing_neural_dual():
        pytest.skip(twosample.missing_neural_dual())
    results = twosample.run_twosample(tmp_path, quick=True, methods_=methods, progress=False)
    rows = results["runs"][0]["methods"]
    assert twosample.ENTROPIC in rows and twosample.MONGE_GAP in rows
    assert "drift / explicit" in rows
    assert sum(label.startswith("W2NeuralDual") for label in rows) == 2  # no auto: no same-time
    for r in rows.values():
        assert r["l2_uvp"] is not None and r["energy_distance"] is not None
    assert rows[twosample.ENTROPIC]["l2_uvp"] < 20.0  # the entropic map is close even here


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_the_command_line_runs_the_two_sample_benchmark(tmp_path):
    from tests.test_cli import run_here

    out = tmp_path / "ts"
    r = run_here(
        "bench",
        "twosample",
        "--quick",
        "--dims",
        "2",
        "--methods",
        "identity",
        "linear",
        "--out",
        str(out),
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "identity" in r.stdout and (out / "results.json").is_file()
    r = run_here("bench", "twosample", "--quick", "--methods", "sgd", "--out", str(out))
    assert r.returncode == 2 and "unknown method 'sgd'" in r.stderr
    r = run_here("bench", "twosample", "--quick", "--problems", "gaussian", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_neural_rows_without_the_bench_extra_say_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "missing_neural_dual", lambda: "the W2NeuralDual rows need flax")
    with pytest.raises(ImportError, match="W2NeuralDual and Monge-gap rows need flax"):
        twosample.run_twosample(tmp_path, methods_=["monge-gap"], progress=False)
