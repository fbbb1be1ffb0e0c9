"""The benchmarks' harness: rows scored by the one scoring function, the one budget loop, the
one writer."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from mongeflow.bench.harness import (
    Budget,
    HeldOut,
    Scored,
    Setting,
    Trained,
    in_row_order,
    result,
    run_budgets,
    score,
    time_to,
    train_and_score,
)
from mongeflow.bench.report import Column, Panel, figure_vs_dim, page, run_sections, write
from mongeflow.bench.rows import IdentityRow
from mongeflow.problems import get_problem


@dataclasses.dataclass(frozen=True)
class TrueMapRow:
    """A row whose training returns T* itself, in the data's units or in posed coordinates."""

    posed: bool = False
    name: str = "true"
    label: str = "T*"
    kind: str = "baseline"

    def train(self, setting):
        true = jax.vmap(setting.problem.true_map)
        if not self.posed:
            return Trained(true, 1.5, "T*")
        # posed coordinates: z = x − 1, and setting.to_data shifts back
        return Trained(lambda z: true(z + 1.0), 1.5, "T* (posed)", posed=True)


@dataclasses.dataclass(frozen=True)
class CheckpointRow:
    """One training run reported at two checkpoints; trained after ``true``."""

    name: str = "checkpoints"
    label: str = "checkpoints"
    kind: str = "outside"
    after: tuple[str, ...] = ("true",)

    def train(self, setting):
        assert "T*" in setting.done  # the rows it reads ran before it
        return {
            "early": Trained(lambda x: x, 1.0, "early", settings={"a": 1}),
            "late": Trained(lambda x: 2 * x, 2.0, "late"),
        }


@pytest.fixture(scope="module")
def pair():
    problem = get_problem("dense-pair", dim=3, n=400, seed=0, validation=0.1)
    return problem, HeldOut.of(problem)


def test_a_row_with_the_true_map_scores_zero_and_the_identity_its_known_figure(pair):
    problem, held = pair
    setting = Setting(problem, to_data=lambda m: lambda x: m(x - 1.0))
    rows = [CheckpointRow(), IdentityRow(), TrueMapRow(), TrueMapRow(posed=True, label="posed")]
    scored = list(train_and_score(rows, setting, held))
    # rows with ``after`` run last; the table keeps the rows' order
    assert [s.label for s in scored] == ["identity", "T*", "posed", "early", "late"]
    ordered = in_row_order(rows, scored)
    assert [s.label for s in ordered] == ["early", "late", "identity", "T*", "posed"]
    by = {s.label: s.scores for s in scored}
    for label in ("T*", "posed"):
        assert by[label]["l2_uvp"] == pytest.approx(0.0, abs=1e-6)
        assert by[label]["cosine"] == pytest.approx(1.0, abs=1e-6)

    # the identity's figures, computed here from the problem itself
    x = np.asarray(problem.validation, np.float64)
    true = np.asarray(jax.vmap(problem.true_map)(problem.validation), np.float64)
    variance = np.sum(np.var(np.asarray(problem.target.data, np.float64), axis=0))
    expected = 100.0 * np.mean(np.sum((x - true) ** 2, axis=1)) / variance
    identity = by["identity"]
    assert identity["l2_uvp"] == pytest.approx(expected, rel=1e-6)
    assert identity["cosine"] is None  # T − id = 0: undefined
    assert identity["energy_distance_floor"] == held.floor
    assert identity["ed_over_floor"] == pytest.approx(identity["energy_distance"] / held.floor)

    # a row of results.json: the figures asked for, the settings, the extra keys
    row = result(next(s for s in scored if s.label == "early"), ("l2_uvp", "cosine"))
    assert row == {
        "kind": "outside",
        "l2_uvp": by["early"]["l2_uvp"],
        "cosine": None,
        "wall_time_s": 1.0,
        "settings": {"a": 1},
        "note": "early",
    }
    assert "settings" not in result(next(s for s in scored if s.label == "late"), ())


def test_drawn_samples_score_the_objective_and_the_per_seed_energy_distance():
    problem = get_problem("gaussian", dim=2)
    held = HeldOut.drawn(problem, jax.random.key(0), 300)
    exact = score(jax.vmap(problem.true_map), held)
    assert exact["l2_uvp"] == pytest.approx(0.0, abs=1e-6)
    assert exact["objective"] is None  # a plain callable: DT unknown
    identity = score(IdentityRow().train(Setting(problem)).map, held)
    assert identity["l2_uvp"] > 1.0 and np.isfinite(identity["objective"])


def test_the_budget_loop_reports_the_time_to_a_level_from_a_scripted_run():
    now = [0.0]
    clock = lambda: now[0]

    def advance(first, count):  # 0.5 s per iteration after a 3 s compilation
        now[0] += 0.5 * count + (3.0 if first == 0 else 0.0)
        return first + count

    levels = iter([40.0, 9.0, 4.0, 1.9, 1.2, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    budgets = [Budget("run", 9, None)]
    reached, curve = run_budgets(
        advance, lambda state: next(levels), budgets, clock=clock, chunk_seconds=1.0
    )
    # chunks: 1 iteration (3.5 s: it compiles), 1 (timed at 3.5 s per iteration), then 2 per
    # second of chunk, the last cut at the budget's 9 iterations
    assert curve["time_s"] == [3.5, 4.0, 5.0, 6.0, 7.0, 7.5]
    assert curve["value"] == [40.0, 9.0, 4.0, 1.9, 1.2, 0.9]
    assert reached["run"]["iterations"] == 9 and not reached["run"]["capped"]
    assert reached["run"]["points"] == 6 and reached["run"]["state"] == 9
    assert time_to(curve["time_s"], curve["value"], 2.0) == 6.0
    assert time_to(curve["time_s"], curve["value"], 1.0) == 7.5
    assert time_to(curve["time_s"], curve["value"], 0.5) is None
    # the same through a row of results.json
    trained = Trained(None, 7.5, curve={"time_s": curve["time_s"], "l2_uvp": curve["value"]})
    row = result(Scored(IdentityRow(), "x", trained, {}, 0.0), (), levels=(2.0, 0.5), curves=True)
    assert row["time_to_2pct_s"] == 6.0 and row["time_to_0.5pct_s"] is None
    assert row["curve"]["l2_uvp"] == curve["value"]


def test_the_writer_writes_the_table_the_json_and_a_figure_against_d(tmp_path):
    results = {
        "runs": [
            {
                "problem": "p",
                "dim": d,
                "methods": {"a": {"l2_uvp": 10.0 / d}, "b": {"l2_uvp": None}},
            }
            for d in (2, 4)
        ]
    }
    columns = [Column("method", lambda name, r: name), Column("L2", lambda name, r: r["l2_uvp"])]
    markdown = page("Title", "Machine: here.", *run_sections(results, columns, lambda r: "lead"))
    assert markdown.splitlines()[:6] == ["# Title", "", "Machine: here.", "", "## p, d = 2", ""]
    assert "| a | 5.0 |" in markdown and "| b | None |" in markdown
    draw = lambda r, path: figure_vs_dim(r, path, [Panel("l2_uvp", "L2")], quoted={"q": {2: 1.0}})
    write(tmp_path / "out", results, markdown, {"fig.png": draw})
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    assert (tmp_path / "out" / "table.md").read_text() == markdown
    assert (tmp_path / "out" / "fig.png").stat().st_size > 0
