"""The benchmarks' code paths (``--quick``: tiny budgets; nothing is timed or measured here)."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest

from mongeflow import schemes
from mongeflow.bench import maps
from mongeflow.bench.common import SeedEnergyDistance, markdown_table, time_to
from mongeflow.bench.paper import PAPER, SCORE, better_rows, faithful_rows
from mongeflow.divergences import KL
from mongeflow.maps import ICNN, parameter_count, transport
from mongeflow.metrics import energy_distance
from mongeflow.problems import get_problem
from mongeflow.schemes import Adam, AdamInner, Explicit, Implicit
from mongeflow.settings import record

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


def test_maps_bench_runs_every_registered_scheme():
    methods = {m.name: m for m in maps.methods(dim=64)}
    assert list(methods) == list(schemes.SCHEMES)
    assert methods["natural"].batch_size == 1024 and methods["natural"].steps == 100
    assert methods["natural"].scheme == schemes.SCHEMES["natural"]
    assert methods["adam"].scheme == Adam(learning_rate=0.01, decay_steps=500)
    assert methods["euclidean"].scheme.learning_rate == pytest.approx(0.05 * 8 / 64)
    inner = AdamInner(steps=50, learning_rate=0.05, decay=True)
    assert methods["explicit"].scheme == Explicit(tau=0.4, inner=inner)
    assert methods["implicit"].scheme == Implicit(tau=0.4, inner=inner, identity_start=True)
    assert all(m.batch_size == maps.BATCH for n, m in methods.items() if n != "natural")


def test_a_registered_scheme_joins_the_maps_bench_with_no_other_edit(monkeypatch):
    extra = Adam(learning_rate=0.02)
    monkeypatch.setattr(schemes, "SCHEMES", {**schemes.SCHEMES, "adam2": extra})
    methods = {m.name: m for m in maps.methods(scale=0.05)}
    assert set(methods) == set(schemes.SCHEMES)
    # no budget of its own: its registered value, its default steps (scaled), the batch
    assert methods["adam2"].scheme == extra
    assert methods["adam2"].steps == round(extra.default_steps * 0.05)
    assert methods["adam2"].batch_size == maps.BATCH
    assert methods["adam"].scheme == Adam(learning_rate=0.01, decay_steps=25)


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
    r = run("bench", "paper", "--rows", "magic", "--out", str(tmp_path / "x"), "--quiet")
    assert r.returncode == 2
    assert "unknown rows" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_bench_maps_quick_writes_results(tmp_path):
    out = tmp_path / "maps"
    r = run(
        "bench",
        "maps",
        "--quick",
        "--problems",
        "known-potential",
        "--quiet",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    (run_,) = results["runs"]
    assert run_["problem"] == "known-potential" and run_["dim"] == 2
    expected = {*schemes.SCHEMES, "ou-flow (unconstrained)"}
    assert expected <= set(run_["methods"])
    for m in run_["methods"].values():
        assert np.isfinite(m["l2_uvp"]) and np.isfinite(m["energy_distance"])
        assert m["wall_time_s"] > 0
    assert run_["methods"]["natural"]["settings"]["scheme"] == record(schemes.SCHEMES["natural"])
    assert (out / "l2_uvp_vs_time.png").stat().st_size > 0
    assert "| known-potential | 2 | natural |" in (out / "table.md").read_text()


def test_bench_maps_rejects_unknown_problem(tmp_path):
    r = run("bench", "maps", "--problems", "nope", "--out", str(tmp_path / "x"), "--quiet")
    assert r.returncode == 2
    assert "unknown problem" in r.stderr and "Traceback" not in r.stderr
