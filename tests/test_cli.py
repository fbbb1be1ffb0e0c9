"""The command line, run for real in a subprocess."""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mongeflow.runs import Checkpoint

# the commands' compilation cache, shared by this test session only (not the user's ~/.cache)
CACHE = Path(tempfile.mkdtemp(prefix="mongeflow-test-cache-"))


def run_here(*args):
    """The command in this process (fast: no interpreter start, shared compilations), for
    the checks of bad input; ``run`` below starts a real subprocess."""
    from mongeflow import cli

    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("MONGEFLOW_NO_CACHE")
    os.environ["MONGEFLOW_NO_CACHE"] = "1"  # leave this process's JAX cache settings alone
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(list(args))
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    finally:
        if saved is None:
            del os.environ["MONGEFLOW_NO_CACHE"]
        else:
            os.environ["MONGEFLOW_NO_CACHE"] = saved
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "mongeflow", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env=_env(),
    )


def _env():
    """This environment, with the commands' cache in :data:`CACHE`: without a cache that JAX
    is already given (``JAX_COMPILATION_CACHE_DIR``), so that the command chooses its own."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    return {**env, "XDG_CACHE_HOME": str(CACHE)}


def test_help_works():
    r = run("fit", "--help")  # a real interpreter start; the top-level help in this process
    assert r.returncode == 0 and "--problem" in r.stdout and "--scheme" in r.stdout
    r = run_here("--help")
    assert r.returncode == 0 and "fit" in r.stdout


def test_fit_writes_metrics_and_figures(tmp_path):
    out = tmp_path / "run"
    r = run(
        "fit",
        "--problem",
        "gaussian",
        "--dim",
        "2",
        "--scheme",
        "adam",
        "--widths",
        "16",
        "16",
        "--steps",
        "60",
        "--eval-size",
        "2000",
        "--quiet",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "run.json").read_text())["settings"]["widths"] == [16, 16]
    metrics = json.loads((out / "metrics.json").read_text())
    for k in ("energy_distance", "l2_uvp", "kl", "wall_time_s"):
        assert k in metrics
    assert metrics["l2_uvp"] < 5.0
    assert (out / "pushforward.png").stat().st_size > 10_000
    assert (out / "displacement.png").stat().st_size > 10_000  # d = 2
    assert any((CACHE / "mongeflow" / "jax").iterdir())  # compiled programs were kept
    assert (out / "history.csv").read_text().startswith("step,seed,loss")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scheme", "sgd"], "unknown scheme 'sgd'; valid schemes: euclidean"),
        (["--problem", "banana"], "unknown problem 'banana'; valid problems: paper-gmm"),
        (["--scheme", "adam", "--tau", "0.1"], "scheme 'adam' has no setting tau"),
        (["--steps", "0"], "--steps must be ≥ 1"),
        (["--problem", "paper-gmm", "--dim", "3"], "paper-gmm is 2-dimensional"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, args, message):
    r = run_here("fit", *args, "--out", str(tmp_path / "x"), "--quiet")
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_a_diverging_fit_stops_at_its_last_finite_map(tmp_path):
    """A learning rate that blows the map up: exit 3, one line saying at which step and what
    to change, and the last finite map saved (and usable) in the run directory."""
    import numpy as np

    out = tmp_path / "run"
    r = run_here(  # in this process: the real subprocess is exercised by the tests above
        "fit", "--problem", "gaussian", "--scheme", "euclidean", "--learning-rate", "1e6",
        "--widths", "16", "16", "--steps", "100", "--checkpoint-every", "5", "--quiet",
        "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "non-finite loss or map at step" in r.stderr or "a map that ran off" in r.stderr
    assert "--float64" in r.stderr
    assert "Traceback" not in r.stderr
    stopped = json.loads((out / "metrics.json").read_text())["stopped_at"][0]
    checkpoint = Checkpoint(out).meta()
    assert 0 <= stopped < checkpoint["step"] < 100  # it ended early, right after the failure
    x = np.random.default_rng(0).normal(size=(50, 2))
    np.save(tmp_path / "x.npy", x)
    r = run_here(
        "apply", str(out), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")
    )
    assert r.returncode == 0, r.stderr
    assert np.all(np.isfinite(np.load(tmp_path / "y.npy")))
