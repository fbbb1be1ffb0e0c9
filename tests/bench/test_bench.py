"""The benchmarks' code paths (``--quick``: tiny budgets; nothing is timed or measured here)."""

import json

import jax
import numpy as np
import pytest

from mongeflow.bench.paper import PAPER, better_rows, faithful_rows
from mongeflow.maps import parameter_count
from tests.test_cli import run


def test_faithful_rows_are_the_papers_settings():
    rows = {r.name: r for r in faithful_rows()}
    assert set(rows) == set(PAPER)
    assert all(
        r.faithful and r.batch_size == 100 and r.gradient == "entropic" for r in rows.values()
    )
    # budgets: 10 × 100 inner Adam steps; 3000 GD steps; 1000 Adam steps
    assert rows["explicit"].gradient_evaluations == 1000
    assert rows["implicit"].gradient_evaluations == 1000
    assert rows["euclidean"].gradient_evaluations == 3000
    assert rows["adam"].gradient_evaluations == 1000
    assert rows["explicit"].scheme.tau == 0.4 and rows["explicit"].scheme.identity_start
    # the example sums gradients over its batch of 100: lr 1e-3 → 0.1, τ 0.4 → 40 on the mean
    assert rows["euclidean"].scheme.learning_rate == pytest.approx(0.1)
    assert rows["implicit"].scheme.tau == pytest.approx(40.0)
    assert not rows["implicit"].scheme.identity_start
    for r in faithful_rows():
        assert parameter_count(r.potential()(jax.random.key(0))) == 541


def test_better_rows_stay_within_the_papers_budget():
    for r in better_rows():
        assert not r.faithful and r.batch_size == 100
        assert r.gradient_evaluations <= 1000


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
    expected = {"natural", "adam", "euclidean", "explicit", "implicit", "ou-flow (unconstrained)"}
    assert expected <= set(run_["methods"])
    for m in run_["methods"].values():
        assert np.isfinite(m["l2_uvp"]) and np.isfinite(m["energy_distance"])
        assert m["wall_time_s"] > 0
    assert (out / "l2_uvp_vs_time.png").stat().st_size > 0
    assert "| known-potential | 2 | natural |" in (out / "table.md").read_text()


def test_bench_maps_rejects_unknown_problem(tmp_path):
    r = run("bench", "maps", "--problems", "nope", "--out", str(tmp_path / "x"), "--quiet")
    assert r.returncode == 2
    assert "unknown problem" in r.stderr and "Traceback" not in r.stderr
