"""The benchmarks' code paths (``--quick``: tiny budgets; nothing is timed or measured here)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow import schemes
from mongeflow.bench import maps, rows
from mongeflow.bench.harness import (
    Budget,
    HeldOut,
    SeedEnergyDistance,
    Transport,
    run_budgets,
    score,
    time_to,
)
from mongeflow.bench.paper import PAPER, SCORE, better_rows, faithful_rows
from mongeflow.bench.report import markdown_table
from mongeflow.divergences import KL
from mongeflow.maps import ICNN, MongeMap, parameter_count, transport
from mongeflow.metrics import energy_distance, evaluate, linear_baseline
from mongeflow.problems import get_problem
from mongeflow.problems.standardise import standardize
from mongeflow.schemes import Adam, AdamInner, Explicit, Implicit
from mongeflow.settings import record
from tests.test_cli import run_here

# the commands' compilation cache, shared by this module's runs only (not the user's ~/.cache)
CACHE = Path(tempfile.mkdtemp(prefix="mongeflow-bench-test-cache-"))


def run(*args):
    """``python -m mongeflow ARGS`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mongeflow", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "XDG_CACHE_HOME": str(CACHE)},
    )


def test_faithful_rows_are_the_papers_settings():
    rows = {r.name: r for r in faithful_rows()}
    assert set(rows) == set(PAPER)
    # the paper's score estimator in the gradient and the velocity (not the exact score)
    assert all(r.faithful and r.batch_size == 100 and r.divergence == SCORE for r in rows.values())
    assert SCORE == KL(gradient="entropic", velocity_estimator="entropic", epsilon_scale=0.05)
    # budgets: 10 × 100 inner Adam steps; 3000 GD steps; 1000 Adam steps
    assert rows["explicit"].gradient_evaluations == 1000
    assert rows["implicit"].gradient_evaluations == 1000
    assert rows["euclidean"].gradient_evaluations == 3000
    assert rows["adam"].gradient_evaluations == 1000
    inner = AdamInner(steps=100, learning_rate=0.1, decay=False)
    assert rows["explicit"].scheme == Explicit(tau=0.4, inner=inner, identity_start=True)
    # the example sums gradients over its batch of 100: lr 1e-3 → 0.1, τ 0.4 → 40 on the mean
    assert rows["euclidean"].scheme.learning_rate == pytest.approx(0.1)
    assert rows["implicit"].scheme == Implicit(tau=40.0, inner=inner, identity_start=False)
    assert rows["adam"].scheme == Adam(learning_rate=0.05, decay_steps=0)
    for r in faithful_rows():
        assert parameter_count(r.potential()(jax.random.key(0))) == 541
        assert "541 parameters" in r.network


def test_reported_settings_come_from_the_scheme_value():
    rows = {r.name: r for r in faithful_rows() + better_rows()}
    for r in rows.values():
        settings = r.settings
        assert settings["scheme"] == record(r.scheme)
        assert settings["divergence"] == record(r.divergence)
        assert settings["gradient_evaluations"] == r.gradient_evaluations
    # only what the scheme value does not say is added by hand
    assert rows["euclidean"].settings["lr_on_batch_sum"] == 1e-3
    assert rows["euclidean"].settings["scheme"]["settings"]["learning_rate"] == pytest.approx(0.1)
    assert rows["implicit"].settings["tau_on_batch_sum"] == 0.4
    assert rows["implicit"].settings["scheme"]["settings"]["tau"] == pytest.approx(40.0)
    assert rows["explicit-cosine"].settings["scheme"]["settings"]["inner_decay"] is True
    assert "4545 parameters" in rows["wide-adam-logdet-cosine"].settings["network"]


def test_better_rows_stay_within_the_papers_budget():
    for r in better_rows():
        assert not r.faithful and r.batch_size == 100
        assert r.gradient_evaluations <= 1000


@pytest.mark.slow
def test_the_scorer_is_the_metrics_energy_distance_on_each_seeds_samples():
    problem = get_problem("paper-gmm")
    seeds, n = 3, 300
    potentials = eqx.filter_vmap(lambda k: ICNN(2, k))(jax.random.split(jax.random.key(1), seeds))
    scores = SeedEnergyDistance(problem, seeds, n)(potentials)
    keys = jax.random.split(jax.random.key(20260325), seeds)
    reference = jax.jit(lambda phi, x, y: energy_distance(transport(phi, x), y))
    for i in range(seeds):
        phi = jax.tree_util.tree_map(lambda a, i=i: a[i] if eqx.is_array(a) else a, potentials)
        x = problem.source.sample(jax.random.fold_in(keys[i], 0), n)
        y = problem.target.sample(jax.random.fold_in(keys[i], 1), n)
        assert scores[i] == pytest.approx(float(reference(phi, x, y)), rel=1e-5)
    # a seed's samples do not depend on how many seeds are scored
    fewer = SeedEnergyDistance(problem, 2, n).keys
    assert (jax.random.key_data(fewer) == jax.random.key_data(keys[:2])).all()


def test_common_helpers():
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, ""]]) == [
        "| a | b |",
        "|---|---|",
        "| 1 | x |",
        "| 2.5 |  |",
    ]
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["a", "b"], [[1]])
    assert time_to([1.0, 2.0, 3.0], [np.nan, 2.0, 0.5], 1.0) == 3.0
    assert time_to([1.0, 2.0], [2.0, 3.0], 1.0) is None


def test_maps_bench_runs_auto_and_every_registered_scheme():
    methods = {m.name: m for m in maps.methods()}
    assert list(methods) == ["auto", *schemes.SCHEMES]
    assert methods["auto"].scheme is None and methods["auto"].steps is None  # fit's choice
    for name, scheme in schemes.SCHEMES.items():
        # the registered value at its default steps
        assert methods[name].scheme == scheme and methods[name].steps is None
    assert set(maps.method_names()) == {*maps.GROUPS, *schemes.SCHEMES}


def test_a_registered_scheme_joins_the_maps_bench_with_no_other_edit(monkeypatch):
    extra = Adam(learning_rate=0.02)
    monkeypatch.setattr(schemes, "SCHEMES", {**schemes.SCHEMES, "adam2": extra})
    methods = {m.name: m for m in maps.methods(scale=0.05)}
    assert set(methods) == {"auto", *schemes.SCHEMES}
    assert methods["adam2"].scheme == extra
    assert methods["adam2"].steps == round(extra.default_steps * 0.05)
    assert "adam2" in maps.method_names()


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_maps_figures_of_a_map_agree_with_evaluate():
    # the entropic map's figures (a map, not a potential) are drawn and computed as
    # metrics.evaluate computes a potential's: checked on the linear baseline
    problem = get_problem("dense-potential", dim=3)
    key = jax.random.key(3)
    linear = linear_baseline(problem, jax.random.key(4))
    held = HeldOut.drawn(problem, key, 200)
    by_potential = score(linear, held)
    by_map = score(Transport(lambda x: transport(linear, x), jax.grad(linear)), held)
    reference = evaluate(problem, linear, key, 200)
    for name in ("l2_uvp", "energy_distance", "objective"):
        assert by_map[name] == pytest.approx(by_potential[name], rel=1e-4, abs=1e-6), name
        assert by_potential[name] == pytest.approx(float(reference[name]), rel=1e-5), name


def test_maps_potentials_in_the_datas_units():
    # Φ(x) = s φ((x − m)/s): ∇Φ(x) = ∇φ(z), the map MongeMap reports for a fit
    posed = standardize(get_problem("dense-potential", dim=2))
    phi = ICNN(2, jax.random.key(0), widths=(8,))
    x = get_problem("dense-potential", dim=2).source.sample(jax.random.key(1), 5)
    z = (x - posed.shift[None, :]) / posed.scale
    mapped = transport(maps.in_units(phi, posed), x)
    np.testing.assert_allclose(mapped, transport(phi, z), rtol=1e-5, atol=1e-5)
    reported = MongeMap(phi, shift=posed.shift, scale=posed.scale).transport(x)
    np.testing.assert_allclose(mapped, reported, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_neural_dual_map_is_the_gradient_of_the_source_potential():
    pytest.importorskip("flax")
    import warnings

    from ott.neural.methods.neuraldual import W2NeuralDual

    with warnings.catch_warnings(), jax.numpy_rank_promotion("allow"):
        warnings.simplefilter("ignore", UserWarning)
        solver = W2NeuralDual(2, rng=jax.random.key(0))
    # a non-trivial f: its parameters moved at random
    leaves, tree = jax.tree_util.tree_flatten(solver.state_f.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    params = jax.tree_util.tree_unflatten(tree, leaves)
    solver.state_f = solver.state_f.replace(params=params)
    f = solver.state_f.potential_value_fn(params)
    x = jax.random.normal(jax.random.key(2), (7, 2))
    with jax.numpy_rank_promotion("allow"):
        grad_f = jax.vmap(jax.grad(f))(x)
    ours = transport(rows.NeuralDualPotential(params, solver.state_f.potential_value_fn), x)
    np.testing.assert_allclose(ours, grad_f, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(grad_f - x))) > 0.1  # not the identity
    # OTT-JAX's own forward transport is halfway, (x + ∇f(x))/2 (the twist of |x − y|²)
    with jax.numpy_rank_promotion("allow"):
        ott = solver.to_dual_potentials(finetune_g=False).transport(x)
    np.testing.assert_allclose(ott, 0.5 * (x + grad_f), rtol=1e-4, atol=1e-5)


def test_neural_dual_budgets_stop_at_their_end_or_at_the_cap():
    now = [0.0]
    clock = lambda: now[0]

    def advance(first, count):  # 1 s per iteration, after a 5 s compilation
        now[0] += count + (5.0 if first == 0 else 0.0)
        return first + count

    budgets = [
        Budget("short", 20, None),
        Budget("same-time", None, 12.0),
        Budget("long", 1000, None),
    ]
    reached, curve = run_budgets(advance, float, budgets, time_cap=30.0, clock=clock)
    assert reached["short"]["iterations"] == 20 and not reached["short"]["capped"]
    assert reached["same-time"]["time"] == pytest.approx(12.0, abs=0.5)
    assert not reached["same-time"]["capped"]
    assert reached["long"]["capped"] and reached["long"]["time"] >= 30.0
    assert reached["long"]["iterations"] < 1000
    assert reached["long"]["state"] == reached["long"]["iterations"]
    # the curve: one point per chunk, chunks of at most CHUNK_SECONDS after the first
    assert curve["time_s"] == sorted(curve["time_s"]) and len(curve["time_s"]) >= 14
    assert reached["long"]["points"] == len(curve["time_s"])


def test_maps_bench_needs_the_bench_extra_for_neural_dual(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "flax" else real(name, *a)
    )
    assert "pip install -e '.[bench]'" in maps.missing_neural_dual()
    with pytest.raises(ImportError, match="flax"):
        maps.run_maps(tmp_path, methods_=["identity", "neural-dual"], progress=False)


@pytest.mark.slow
def test_bench_paper_quick_writes_results(tmp_path):
    out = tmp_path / "paper"
    r = run(
        "bench",
        "paper",
        "--quick",
        "--seeds",
        "2",
        "--rows",
        "explicit",
        "adam-logdet-cosine",
        "--quiet",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"explicit", "adam-logdet-cosine"}
    for name, m in results["methods"].items():
        assert set(m) >= {"faithful", "settings", "energy_distance", "wall_time_s"}
        assert m["faithful"] == (name == "explicit")
        assert len(m["energy_distance"]) == 2
        assert all(v is not None and np.isfinite(v) and v > 0 for v in m["energy_distance"])
    explicit = results["methods"]["explicit"]["settings"]
    assert explicit["scheme"]["name"] == "explicit"
    assert explicit["divergence"]["settings"]["gradient"] == "entropic"
    for f in ("table.md", "fig1_pushforward.png", "fig2_histograms.png"):
        assert (out / f).stat().st_size > 0
    assert "| explicit | yes |" in (out / "table.md").read_text()


def test_bench_paper_rejects_unknown_rows(tmp_path):
    r = run_here("bench", "paper", "--rows", "magic", "--out", str(tmp_path / "x"), "--quiet")
    assert r.returncode == 2
    assert "unknown rows" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_bench_maps_quick_writes_results(tmp_path):
    out = tmp_path / "maps"
    # a registered scheme takes fit's code path, as auto does: auto stands for them here
    rows = ["identity", "linear", "entropic-map", "neural-dual", "auto"]
    r = run("bench", "maps", "--quick", "--methods", *rows, "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    (run_,) = results["runs"]
    assert run_["problem"] == "dense-potential" and run_["dim"] == 2
    names = list(run_["methods"])
    assert names == [
        maps.IDENTITY,
        maps.LINEAR,
        maps.ENTROPIC,
        *maps.ND_ROWS.values(),
        "auto",
    ]
    for name, m in run_["methods"].items():
        assert np.isfinite(m["l2_uvp"]) and np.isfinite(m["energy_distance"]), name
        assert m["objective"] is not None and np.isfinite(m["objective"]), name
        assert m["wall_time_s"] > 0 or name == maps.IDENTITY
    nd = run_["methods"][maps.ND_ROWS["default"]]
    assert nd["settings"]["iterations"] == maps.QUICK_ND_ITERS
    assert nd["settings"]["icnn_widths"] == [64, 64, 64, 64]
    long = run_["methods"][maps.ND_ROWS["long"]]
    assert long["settings"]["iterations"] == 4 * maps.QUICK_ND_ITERS or "cap" in long["note"]
    auto = run_["methods"]["auto"]
    assert auto["settings"]["scheme"]["name"] == "adam" and "curve" in auto
    assert (out / "l2_uvp_vs_time.png").stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "## dense-potential, d = 2" in table and "| auto |" in table


def test_bench_maps_rejects_bad_requests(tmp_path):
    r = run_here("bench", "maps", "--problems", "nope", "--out", str(tmp_path / "x"), "--quiet")
    assert r.returncode == 2
    assert "unknown problem" in r.stderr and "Traceback" not in r.stderr
    # the CLI prints these ValueErrors as one line too
    with pytest.raises(ValueError, match="no known map"):
        maps.run_maps(tmp_path, problems=["paper-gmm"], progress=False)
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        maps.run_maps(tmp_path, methods_=["magic"], progress=False)
    with pytest.raises(ValueError, match="bench twosample"):
        maps.run_maps(tmp_path, problems=["dense-pair"], methods_=["identity"], progress=False)


def test_neural_dual_rows_without_the_bench_extra_say_what_to_install(tmp_path, monkeypatch):
    # the error path of the optional extra, whether or not flax and diffrax are installed
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("flax", "diffrax") else real(name, *a),
    )
    assert "pip install -e '.[bench]'" in maps.missing_neural_dual()
    with pytest.raises(ImportError, match="flax and diffrax"):
        maps.run_maps(tmp_path, methods_=["neural-dual"], progress=False)
    # rows that need no extra are not refused
    with pytest.raises(ValueError, match="time cap"):
        maps.run_maps(tmp_path, methods_=["auto"], time_cap=0, progress=False)
