"""The command line's answers to a new user's slips: sampling beyond the stored target rows,
a huge --dim, a misspelt flag, command, name or target, the history figure, the run record
of a data run, and the help of the settings the fit chooses itself."""

import json
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from mongeflow.runs import CHECKPOINT_FILE, CHECKPOINT_MAGIC, Checkpoint
from tests.test_cli import run_here


@pytest.fixture(scope="module")
def data_run(tmp_path_factory):
    """A tiny fit of two sample sets (a target known by its rows): its run directory."""
    d = tmp_path_factory.mktemp("usability")
    rng = np.random.default_rng(0)
    np.save(d / "x.npy", rng.normal(size=(200, 2)))
    np.save(d / "mix.npy", rng.normal(size=(100, 2)) * [0.5, 2.0] + [3.0, 0.0])
    (d / "v.py").write_text("def V(y):\n    return 0.5 * (y**2).sum()\n")
    out = d / "run"
    r = run_here(
        "fit", "--source", str(d / "x.npy"), "--target", f"samples:{d / 'mix.npy'}",
        "--divergence", "energy", "--scheme", "adam", "--widths", "8", "8", "--steps", "2",
        "--batch-size", "32", "--eval-size", "100", "--quiet", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return out


# --- 1. sample: as many distinct points as stored target rows -----------------------------


def _rows_hit(run, samples):
    """The stored target rows that T maps ``samples`` onto (each sample is T⁻¹ of a row)."""
    import mongeflow as mf

    rows = np.load(run / "target.npy")
    mapped = np.asarray(mf.load(run).transport(samples))
    dist = np.linalg.norm(mapped[:, None] - rows[None], axis=2)
    assert dist.min(1).max() < 1e-3  # every sample is T⁻¹ of a stored row
    return dist.argmin(1), len(rows)


@pytest.mark.slow  # 20 s cold on 2 cores; `pytest -m slow` runs it
def test_sample_up_to_the_stored_rows_draws_them_without_replacement(data_run, tmp_path):
    k = len(np.load(data_run / "target.npy"))  # 90: the 10 % held out are not saved
    r = run_here("sample", str(data_run), "-n", str(k - 5), "--output", str(tmp_path / "s.npy"))
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr
    samples = np.load(tmp_path / "s.npy")
    hit, _ = _rows_hit(data_run, samples)
    assert len(np.unique(hit)) == k - 5  # distinct rows: no row used twice


@pytest.mark.slow  # 3 s cold on 2 cores; `pytest -m slow` runs it
def test_sample_beyond_the_stored_rows_warns_naming_their_count(data_run, tmp_path):
    k = len(np.load(data_run / "target.npy"))
    n = 3 * k
    r = run_here("sample", str(data_run), "-n", str(n), "--output", str(tmp_path / "s.npy"))
    assert r.returncode == 0, r.stderr
    assert f"its {k} stored rows" in r.stderr and f"only {k} distinct" in r.stderr, r.stderr
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (n, 2)
    hit, _ = _rows_hit(data_run, samples)
    assert len(np.unique(hit)) == k  # every stored row used, none left out


# --- 2. --dim too large ------------------------------------------------------------------


def test_a_huge_dim_is_one_clear_line(tmp_path):
    r = run_here("fit", "--problem", "gaussian", "--dim", "100000", "--out", str(tmp_path / "r"))
    assert r.returncode == 2, r.stderr
    assert "--dim 100000 is too large: expected 1 to 10000" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_running_out_of_memory_building_the_problem_is_one_clear_line(tmp_path, monkeypatch):
    from mongeflow import runs

    def too_big(name, dim=None):
        np.empty((10**7, 10**7))  # numpy's _ArrayMemoryError, as for a huge covariance

    monkeypatch.setattr(runs, "get_problem", too_big)
    r = run_here("fit", "--problem", "gaussian", "--dim", "5000", "--out", str(tmp_path / "r"))
    assert r.returncode == 2, r.stderr
    assert "not enough memory to build the problem with d = 5000" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # refused before the run directory was written


# --- 3. history.png: one panel for equal loss and objective, the linear map's line --------


def _fake(loss, objective, divergence="kl"):
    step = np.array([10, 20, 30])
    return SimpleNamespace(
        history={
            "step": step,
            "loss": np.asarray(loss, float)[:, None],
            "objective": np.asarray(objective, float)[:, None],
            "energy_distance": np.array([[0.5], [0.2], [0.1]]),
        },
        metrics={
            "linear_energy_distance": np.array([0.15]),
            "linear_objective": np.array([2.5]),
        },
        divergence=SimpleNamespace(name=divergence),
    )


def _linear_lines(ax):
    return [line for line in ax.get_lines() if line.get_label() == "linear map"]


def test_history_draws_equal_loss_and_objective_once_with_the_linear_map():
    from mongeflow.plot import plot_history

    fig = plot_history(_fake([3.0, 2.0, 1.0], [3.0, 2.0, 1.0]))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss (= objective)", "energy_distance"]
    (loss_line,) = _linear_lines(fig.axes[0])
    assert loss_line.get_linestyle() == "--" and set(loss_line.get_ydata()) == {2.5}
    (ed_line,) = _linear_lines(fig.axes[1])
    assert set(ed_line.get_ydata()) == {0.15}


def test_history_keeps_a_distinct_objective_and_draws_no_unlike_baseline():
    from mongeflow.plot import plot_history

    fig = plot_history(_fake([3.0, 2.0, 1.0], [9.0, 8.0, 7.0]))
    assert [ax.get_title() for ax in fig.axes] == ["loss", "objective", "energy_distance"]
    assert [len(_linear_lines(ax)) for ax in fig.axes] == [1, 0, 1]
    # an energy-distance fit: its loss is not the KL objective of linear_objective
    fig = plot_history(_fake([3.0, 2.0, 1.0], [3.0, 2.0, 1.0], divergence="energy"))
    assert [len(_linear_lines(ax)) for ax in fig.axes] == [0, 1]


def test_history_draws_the_sinkhorn_divergence_with_the_linear_maps_held_out_figure():
    from mongeflow.plot import plot_history

    fake = _fake([3.0, 2.0, 1.0], [9.0, 8.0, 7.0], divergence="energy")
    fake.history["sinkhorn_divergence"] = np.array([[9.0], [4.0], [3.0]])
    fake.comparison = {"figure": "sinkhorn_divergence", "linear": np.array([5.0])}
    fig = plot_history(fake)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["loss", "objective", "energy_distance", "sinkhorn_divergence"]
    (line,) = _linear_lines(fig.axes[3])
    assert set(line.get_ydata()) == {5.0}


# --- 4. run.json of a data run ------------------------------------------------------------


@pytest.mark.slow  # 3 s cold on 2 cores; `pytest -m slow` runs it
def test_a_data_run_records_no_builtin_problem_and_resumes(data_run, tmp_path):
    settings = json.loads((data_run / "run.json").read_text())["settings"]
    assert settings["problem"] is None and settings["source"].endswith("x.npy")
    copy = tmp_path / "run"
    shutil.copytree(data_run, copy)
    r = run_here("fit", "--resume", "--out", str(copy), "--steps", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert Checkpoint(copy).meta()["step"] == 3
    assert json.loads((copy / "run.json").read_text())["settings"]["problem"] is None


@pytest.mark.slow  # 2 s cold on 2 cores; `pytest -m slow` runs it
def test_problem_and_source_together_are_refused(data_run, tmp_path):
    source = json.loads((data_run / "run.json").read_text())["settings"]["source"]
    r = run_here("fit", "--problem", "gaussian", "--source", source, "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "exclude each other" in r.stderr, r.stderr


# --- 5. a target given as a file: the spec it needs ---------------------------------------


@pytest.mark.parametrize(
    "target, hint",
    [
        ("{d}/mix.npy", "did you mean --target samples:{d}/mix.npy"),
        ("mix.csv", "did you mean --target samples:mix.csv"),
        ("{d}/v.py", "did you mean --target {d}/v.py:NAME"),
        ("sample:{d}/mix.npy", "did you mean --target samples:{d}/mix.npy"),
        ("gausian", "did you mean --target gaussian?"),
    ],
)
@pytest.mark.slow  # 2 s cold on 2 cores; `pytest -m slow` runs it
def test_an_unknown_target_suggests_the_spec(data_run, tmp_path, target, hint):
    d = str(data_run.parent)
    target, hint = target.replace("{d}", d), hint.replace("{d}", d)
    r = run_here("fit", "--source", f"{d}/x.npy", "--target", target, "--out", str(tmp_path / "r"))
    assert r.returncode == 2, r.stderr
    assert f"unknown target {target!r}" in r.stderr and hint in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# --- 6. misspelt flags, commands and names ------------------------------------------------


@pytest.mark.parametrize(
    "args, message, hint",
    [
        (["fit", "--stpes", "3"], "unrecognized arguments", "--stpes: did you mean --steps?"),
        (["fit", "--learnig-rate=0.1"], "unrecognized", "did you mean --learning-rate?"),
        (["fitt"], "invalid choice: 'fitt'", "did you mean 'fit'?"),
        (["fit", "--keep", "bset"], "invalid choice: 'bset'", "did you mean 'best'?"),
        (["fit", "--scheme", "adma"], "unknown scheme 'adma'", "did you mean 'adam'?"),
        (["fit", "--divergence", "enrgy"], "unknown divergence", "did you mean 'energy'?"),
        (["fit", "--problem", "gausian"], "unknown problem", "did you mean 'gaussian'?"),
    ],
)
def test_a_misspelt_word_gets_the_closest_one(tmp_path, args, message, hint):
    r = run_here(*args, "--out", str(tmp_path / "r"), "--quiet")
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]  # argparse prints the usage above its line
    assert message in last and last.endswith(hint), r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "r").exists()


# --- a list setting: numbers on the command line, a JSON list in run.json ---------------


def _drift_fit(data, out, *extra):
    """A tiny drift fit of the two sample sets of ``data`` (the ``data_run`` folder)."""
    return run_here(
        "fit", "--source", str(data / "x.npy"), "--target", f"samples:{data / 'mix.npy'}",
        "--divergence", "drift", "--scheme", "explicit", "--inner-steps", "2", "--widths", "8",
        "--steps", "2", "--batch-size", "32", "--eval-size", "0", "--quiet", "--out", str(out),
        *extra,
    )  # fmt: skip


@pytest.mark.slow  # 7 s cold on 2 cores; `pytest -m slow` runs it
def test_a_list_setting_round_trips_through_the_command_line_and_run_json(data_run, tmp_path):
    out = tmp_path / "run"
    r = _drift_fit(data_run.parent, out, "--temperatures", "0.01,0.02,0.05")
    assert r.returncode == 0, r.stderr[-2000:]
    stored = json.loads((out / "run.json").read_text())["settings"]
    assert stored["temperatures"] == [0.01, 0.02, 0.05]
    record = Checkpoint(out).meta()["run"]["divergence"]
    assert record == {
        "name": "drift",
        "settings": {"temperatures": [0.01, 0.02, 0.05], "normalise": True, "block_size": 1024},
    }
    # resumed: the same numbers however written continue it; other numbers are refused
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "3", "--quiet",
                 "--temperatures", "0.01, 0.02,0.05")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert Checkpoint(out).meta()["step"] == 3
    r = run_here("fit", "--resume", "--out", str(out), "--temperatures", "0.1", "--quiet")
    assert r.returncode == 2 and "--temperatures (0.01, 0.02, 0.05) -> (0.1,)" in r.stderr
    # --help shows the command line's form
    text = _help_of(run_here("fit", "--help").stdout, "--temperatures")
    assert text.startswith("X,Y,... drift: temperatures") and "default 0.02,0.05,0.2" in text


@pytest.mark.slow  # 2 s cold on 2 cores; `pytest -m slow` runs it
def test_a_run_whose_list_setting_was_saved_as_a_string_resumes(data_run, tmp_path):
    """An older version saved a list setting as one string, in run.json and in the
    checkpoint's record: such a run is read, resumed and then saved with a list."""
    out = tmp_path / "run"
    assert _drift_fit(data_run.parent, out, "--temperatures", "0.01,0.02,0.05").returncode == 0
    meta = json.loads((out / "run.json").read_text())
    meta["settings"]["temperatures"] = "0.01,0.02,0.05"
    (out / "run.json").write_text(json.dumps(meta))
    path = out / CHECKPOINT_FILE
    data = path.read_bytes()
    start = len(CHECKPOINT_MAGIC) + 8
    size = int.from_bytes(data[len(CHECKPOINT_MAGIC) : start], "little")
    record = json.loads(data[start : start + size])
    record["run"]["divergence"]["settings"]["temperatures"] = "0.01,0.02,0.05"
    header = json.dumps(record).encode()
    path.write_bytes(
        CHECKPOINT_MAGIC + len(header).to_bytes(8, "little") + header + data[start + size :]
    )
    assert Checkpoint(out).meta()["run"]["divergence"]["settings"]["temperatures"] == (
        "0.01,0.02,0.05"
    )
    r = run_here("fit", "--resume", "--out", str(out), "--steps", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert Checkpoint(out).meta()["step"] == 3
    stored = json.loads((out / "run.json").read_text())["settings"]
    assert stored["temperatures"] == [0.01, 0.02, 0.05]
    # other numbers are still other settings
    r = run_here("fit", "--resume", "--out", str(out), "--temperatures", "0.01,0.02", "--quiet")
    assert r.returncode == 2 and "--temperatures" in r.stderr, r.stderr


def test_a_list_setting_saved_as_a_string_is_no_difference():
    from mongeflow.runs import differences

    saved = {"divergence": {"settings": {"temperatures": "0.01,0.02,0.05", "block_size": 8}}}
    now = {"divergence": {"settings": {"temperatures": [0.01, 0.02, 0.05], "block_size": 8}}}
    assert differences(saved, now) == []
    now["divergence"]["settings"]["temperatures"] = (0.01, 0.02)
    assert differences(saved, now) == [
        "divergence.settings.temperatures: '0.01,0.02,0.05' -> (0.01, 0.02)"
    ]


# --- the help of the settings the fit chooses itself --------------------------------------


def _help_of(text, flag):
    """The help paragraph of ``flag`` in ``--help`` output, on one line."""
    match = re.search(rf"\n  {re.escape(flag)}\b(.*?)(?=\n  -|\n\n|\Z)", text, re.S)
    assert match, flag
    return " ".join(match.group(1).split())


def test_fit_help_marks_the_automatic_settings():
    r = run_here("fit", "--help")
    assert r.returncode == 0
    for flag in ("--steps", "--batch-size", "--learning-rate", "--decay-steps", "--tau"):
        assert "(automatic: " in _help_of(r.stdout, flag), flag
    rate = _help_of(r.stdout, "--learning-rate")
    assert "registered default 0.001 (euclidean); 0.05 (adam)" in rate
    assert "automatic" not in _help_of(r.stdout, "--inner-learning-rate")


def test_the_networks_choices_on_the_command_line_are_the_networks_own(tmp_path):
    from mongeflow.maps.icnn import ACTIVATIONS, NONNEGATIVITIES

    r = run_here("fit", "--help")
    assert r.returncode == 0
    assert "{" + ",".join(ACTIVATIONS) + "}" in _help_of(r.stdout, "--activation")
    assert "{" + ",".join(NONNEGATIVITIES) + "}" in _help_of(r.stdout, "--nonnegativity")
    r = run_here(
        "fit", "--problem", "gaussian-shift", "--dim", "2", "--activation", "relu",
        "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert r.returncode != 0
    assert "invalid choice: 'relu'" in r.stderr and "beta-softplus" in r.stderr


def test_the_automatic_settings_of_the_help_cover_what_the_fit_chooses(tmp_path):
    """Every scheme or divergence setting that the automatic fit sets to other than the
    registered value is marked automatic in --help (runs.AUTOMATIC)."""
    from mongeflow.auto import choose, choose_divergence
    from mongeflow.divergences import DIVERGENCES, KL
    from mongeflow.io import data_problem
    from mongeflow.runs import AUTOMATIC
    from mongeflow.schemes import SCHEMES
    from mongeflow.settings import flat

    changed = set()
    for dim in (2, 8, 64):  # d = 8: the semi-dual game jitters the source's rows alone
        rng = np.random.default_rng(0)
        np.save(tmp_path / "y.npy", rng.normal(size=(50, dim)))
        x = rng.normal(size=(50, dim))
        pair = data_problem(x, f"samples:{tmp_path / 'y.npy'}")
        for problem, divergence, named in (
            (data_problem(x, "gaussian"), KL(), None),
            (pair, choose_divergence(pair), None),  # the semi-dual scheme
            (pair, choose_divergence(pair, "explicit"), "explicit"),  # the drift
        ):
            base = flat(DIVERGENCES[divergence.name])
            changed |= {k for k, v in flat(divergence).items() if base.get(k) != v}
            scheme = choose(problem, divergence, None, named, automatic=named is None).scheme
            base = flat(SCHEMES[scheme.name])
            changed |= {k for k, v in flat(scheme).items() if base.get(k) != v}
    assert changed and changed <= set(AUTOMATIC), changed - set(AUTOMATIC)


# --- a map that does not beat the linear map is said so, and --strict makes it an error ---


@pytest.mark.slow  # 13 s cold on 2 cores; `pytest -m slow` runs it
def test_a_fit_that_loses_to_the_linear_map_says_so_and_strict_exits_4(tmp_path):
    args = ["fit", "--problem", "gaussian", "--dim", "2", "--steps", "3", "--quiet"]
    args += ["--eval-size", "500", "--scheme", "adam", "--learning-rate", "0.001"]
    r = run_here(*args, "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "does not beat the linear (Bures) map" in r.stderr
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    cmp = metrics["linear_comparison"]
    assert cmp["figure"] == "validation_objective"
    assert cmp["per_seed"]["0"]["verdict"] == "worse" and cmp["per_seed"]["0"]["linear_kept"]
    assert metrics["beats_linear"] is False and metrics["linear_kept"] is True
    # the saved map is the linear one
    assert json.loads((tmp_path / "a" / "map.json").read_text())["potential"]["class"] == (
        "AffinePotential"
    )
    r = run_here(*args, "--strict", "--out", str(tmp_path / "b"))
    assert r.returncode == 4, r.stderr[-2000:]
    assert "--strict" in r.stderr
