"""The worked examples (``examples/*.py``) and the README's Python snippets run, at a small
size, as a reader would run them."""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import mongeflow as mf

ROOT = Path(__file__).parents[1]


def run_example(name: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """``examples/NAME`` with ``args`` as a reader runs it (a subprocess, in ``tmp_path``),
    sharing the suite's compilation cache (tests/conftest.py) when there is one: compilation
    is most of a small run's time."""
    env = dict(os.environ)
    cache = jax.config.jax_compilation_cache_dir
    if cache:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )


@pytest.mark.slow  # 30 s cold on 2 cores; `pytest -m slow` runs it
def test_iris_example_runs_small_and_writes_its_files(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "iris"
    env = dict(os.environ)
    cache = jax.config.jax_compilation_cache_dir  # the suite's (tests/conftest.py), if any
    if cache:
        # compilation is most of the run's time: a second run loads it from there
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    r = run_example("iris.py", tmp_path, "--out", str(out), "--steps", "10")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("iris.csv", "iris.png", "map/map.eqx", "map/map.json"):
        assert (out / name).is_file(), name
    assert np.loadtxt(out / "iris.csv", delimiter=",", skiprows=1).shape == (150, 2)
    assert "inverse residual" in r.stdout
    # nothing written beside the example or in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iris"]


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_posterior_example_runs_small_and_compares_with_nuts(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "posterior"
    argv = ["--out", str(out), "--steps", "10", "--samples", "500"]
    r = run_example("posterior.py", tmp_path, *argv)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "posterior.png").is_file() and (out / "map" / "map.json").is_file()
    rows = {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines() if line}
    assert {"mongeflow", "linear", "exact"} <= set(rows), r.stdout
    assert all(float(v) >= 0 for v in rows["mongeflow"][:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["posterior"]


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_single_cell_example_maps_one_population_onto_another(tmp_path):
    anndata = pytest.importorskip("anndata")
    pytest.importorskip("matplotlib")
    import importlib.util

    # the data ship with scanpy: found as the example finds them, without importing it
    spec = importlib.util.find_spec("scanpy")
    folders = [] if spec is None else spec.submodule_search_locations or []
    files = [Path(f) / "datasets" / "10x_pbmc68k_reduced.h5ad" for f in folders]
    if not any(f.is_file() for f in files):
        pytest.skip("scanpy's datasets/10x_pbmc68k_reduced.h5ad is not installed")
    path = next(f for f in files if f.is_file())
    out = tmp_path / "single_cell"
    before = path.stat().st_mtime_ns
    r = run_example("single_cell.py", tmp_path, "--out", str(out), "--steps", "10", "--pcs", "5")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    assert {"mongeflow", "linear", "identity"} <= set(rows), r.stdout
    assert float(rows["identity"][1]) > 0 and float(rows["mongeflow"][1]) >= 0
    assert (out / "single_cell.png").is_file() and (out / "map" / "map.json").is_file()
    mapped = anndata.read_h5ad(out / "mapped.h5ad")
    assert (mapped.obs["bulk_labels"] == "CD14+ Monocyte").all()
    assert mapped.obsm["X_mongeflow"].shape == (mapped.n_obs, 5)
    assert np.isfinite(mapped.obsm["X_mongeflow"]).all()
    # nothing written beside the example, in the working directory or to scanpy's file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single_cell"]
    assert path.stat().st_mtime_ns == before


# --- README.md's ```python blocks --------------------------------------------------------

#: The README's sizes, shrunk for the test by textual replacement (each text must be in
#: README.md, so that a change there is noticed): the first block's automatic fit of two
#: seeds at d = 8 takes about a minute on a 2-core CPU; 5 steps at d = 2 run the same code.
SMALLER = {
    'mf.get_problem("gaussian", dim=8)': 'mf.get_problem("gaussian", dim=2)',
    "seed=[0, 1], callbacks": "seed=[0, 1], steps=5, callbacks",
    '"adam", steps=1000,': '"adam", steps=5,',
    "max_steps=300)": "max_steps=5)",
}


def readme_blocks():
    """(first line number, code) of each ```python block of README.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start(1)) + 1, m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    ]


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    """The blocks run in order in one namespace, as in one session (a later block uses the
    earlier imports), in a folder holding the file they read (``x.csv``)."""
    blocks = readme_blocks()
    assert len(blocks) >= 3
    code = "\n".join(c for _, c in blocks)
    for old in SMALLER:
        assert old in code, f"README.md no longer has {old!r}: update SMALLER"
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.gamma(2.0, 1.5, 300), rng.normal(size=300)])  # skewed, 2-D
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b", comments="")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    with warnings.catch_warnings():
        # a 5-step fit warns that it is short and may not beat the linear map: expected here
        warnings.simplefilter("ignore", mf.FitWarning)
        for line, block in blocks:
            for old, new in SMALLER.items():
                block = block.replace(old, new)
            exec(compile(block, f"README.md, block at line {line}", "exec"), namespace)
    assert namespace["samples"].shape == (1000, 2)
    assert (tmp_path / "runs" / "mine" / "map.json").is_file()


@pytest.mark.slow  # 10-30 s on 2 cores: `pytest -m slow` runs it
def test_domain_adaptation_example_runs_small_and_writes_its_files(tmp_path):
    """``examples/domain_adaptation.py`` at 2 steps and one split: its table and figure."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "domain_adaptation"
    r = run_example(
        "domain_adaptation.py", tmp_path, "--out", str(out), "--steps", "2", "--repeats", "1"
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "domain_adaptation.png").is_file()
    header = (out / "accuracy.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[0] == "seed" and "source mapped by the MongeTransport map" in header
    table = np.loadtxt(out / "accuracy.csv", delimiter=",", skiprows=1, ndmin=2)
    assert table.shape == (1, 5) and np.all((table[:, 1:] >= 0) & (table[:, 1:] <= 1))
    assert "source mapped by the linear (Bures) map" in r.stdout
    # nothing written beside the example or in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["domain_adaptation"]
