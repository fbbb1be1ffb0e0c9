"""AnnData (.h5ad) files, pandas DataFrames and CSV headers: reading, selecting cells by
obs, fitting one population onto another, and writing the mapped cells back."""

import json
import sys

import numpy as np
import pytest

anndata = pytest.importorskip("anndata")
pd = pytest.importorskip("pandas")
sparse = pytest.importorskip("scipy.sparse")

from mongeflow import io as mio  # noqa: E402
from mongeflow.io import InputError, data_problem, load_array, select_rows  # noqa: E402
from tests.test_cli import run_here  # noqa: E402

MISSING = "reading .h5ad files needs the 'anndata' extra: pip install 'mongeflow[anndata]'"


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    """400 cells: 200 'control' around 0 and 200 'drug' around (4, -2, 0, 0, 0) in a 5-D
    obsm["X_pca"]; a sparse X of 20 genes, a layer, a numeric obs column."""
    d = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(0)
    shift = np.array([4.0, -2.0, 0.0, 0.0, 0.0])
    pca = rng.normal(size=(400, 5)) * [1.0, 0.8, 0.6, 0.5, 0.4]
    pca[200:] = pca[200:] * 1.2 + shift
    counts = sparse.random(400, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    obs = pd.DataFrame(
        {
            "condition": pd.Categorical(["control"] * 200 + ["drug"] * 200),
            "batch": np.tile([0, 1, 2, 3], 100),
            "cell type": ["T cell", "B cell"] * 200,
        },
        index=[f"cell{i}" for i in range(400)],
    )
    adata = anndata.AnnData(X=counts, obs=obs)
    adata.obsm["X_pca"] = pca
    adata.layers["counts"] = counts.toarray()
    adata.write_h5ad(d / "cells.h5ad")
    names = ",".join(f"pc{i}" for i in range(1, 6))
    np.savetxt(d / "control.csv", pca[:200], delimiter=",", header=names, comments="")
    np.savetxt(d / "plain.csv", pca[:200], delimiter=",")
    return d


@pytest.fixture(scope="module")
def run(cells, tmp_path_factory):
    """A fit of the control cells onto the drug cells, both read from the same file."""
    out = tmp_path_factory.mktemp("runs") / "run"
    h5ad = cells / "cells.h5ad"
    r = run_here(
        "fit",
        *("--source", f"{h5ad}:obsm/X_pca", "--source-where", 'condition == "control"'),
        *("--target", f"samples:{h5ad}:obsm/X_pca", "--target-where", "condition == 'drug'"),
        *("--steps", "30", "--eval-size", "200", "--quiet", "--out", str(out)),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.mark.slow  # 10 s cold on 2 cores; `pytest -m slow` runs it
def test_fit_records_the_file_and_the_selection(run, cells):
    settings = json.loads((run / "run.json").read_text())["settings"]
    h5ad = str((cells / "cells.h5ad").resolve())
    assert settings["source"] == f"{h5ad}:obsm/X_pca"
    assert settings["target"] == f"samples:{h5ad}:obsm/X_pca"
    assert settings["source_where"] == 'condition == "control"'
    assert settings["target_where"] == "condition == 'drug'"
    assert list(settings["inputs"]) == [h5ad]  # one file, by its SHA-256
    assert len(settings["inputs"][h5ad]) == 64
    r = run_here("fit", "--resume", "--out", str(run), "--steps", "35", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]  # the stored selections, read again


def test_apply_writes_an_anndata_with_the_mapped_cells(run, cells, tmp_path):
    h5ad = cells / "cells.h5ad"
    r = run_here(
        "apply",
        str(run),
        *("--input", f"{h5ad}:obsm/X_pca", "--input-where", "condition == control"),
        *("--output", str(tmp_path / "out.h5ad")),
    )
    assert r.returncode == 0, r.stderr
    out = anndata.read_h5ad(tmp_path / "out.h5ad")
    assert out.n_obs == 200 and set(out.obs["condition"]) == {"control"}
    assert out.obsm["X_mongeflow"].shape == (200, 5)
    full = anndata.read_h5ad(h5ad)
    np.testing.assert_allclose(out.obsm["X_pca"], full.obsm["X_pca"][:200])  # the input's
    drug = full.obsm["X_pca"][200:].mean(0)
    before = np.linalg.norm(out.obsm["X_pca"].mean(0) - drug)
    after = np.linalg.norm(out.obsm["X_mongeflow"].mean(0) - drug)
    assert after < 0.25 * before, (before, after)
    # without a selection every cell is kept; another key
    r = run_here(
        "apply",
        str(run),
        *("--input", f"{h5ad}:obsm/X_pca", "--output", str(tmp_path / "all.h5ad")),
        *("--output-key", "X_drug"),
    )
    assert r.returncode == 0, r.stderr
    out = anndata.read_h5ad(tmp_path / "all.h5ad")
    assert out.n_obs == 400 and out.obsm["X_drug"].shape == (400, 5)
    assert "X_mongeflow" not in out.obsm


@pytest.mark.slow  # 3 s cold on 2 cores; `pytest -m slow` runs it
def test_csv_header_is_kept(run, cells, tmp_path):
    r = run_here(
        "apply",
        str(run),
        "--input",
        str(cells / "control.csv"),
        "--output",
        str(tmp_path / "y.csv"),
    )
    assert r.returncode == 0, r.stderr
    lines = (tmp_path / "y.csv").read_text().splitlines()
    assert lines[0] == "pc1,pc2,pc3,pc4,pc5"
    mapped = load_array(tmp_path / "y.csv")
    r = run_here(
        "apply", str(run), "--input", str(cells / "plain.csv"), "--output", str(tmp_path / "z.csv")
    )
    assert r.returncode == 0, r.stderr
    first = (tmp_path / "z.csv").read_text().splitlines()[0]
    assert [float(v) for v in first.split(",")]  # no header in, none out
    np.testing.assert_allclose(load_array(tmp_path / "z.csv"), mapped)
    points = mio.read_points(cells / "control.csv")
    assert points.columns == ["pc1", "pc2", "pc3", "pc4", "pc5"]


@pytest.mark.slow  # 2 s cold on 2 cores; `pytest -m slow` runs it
def test_h5ad_output_needs_an_h5ad_input(run, cells, tmp_path):
    r = run_here(
        "apply", str(run), "--input", str(cells / "plain.csv"), "--output", str(tmp_path / "o.h5ad")
    )
    assert r.returncode == 2
    assert "copy of an --input .h5ad file" in r.stderr


def test_load_array_reads_x_layers_obsm(cells):
    h5ad = cells / "cells.h5ad"
    x = load_array(h5ad)  # X, sparse: made dense
    assert x.shape == (400, 20) and x.dtype == np.float64
    np.testing.assert_allclose(load_array(f"{h5ad}:X"), x)
    np.testing.assert_allclose(load_array(f"{h5ad}:layers/counts"), x)
    pca = load_array(f"{h5ad}:obsm/X_pca", where="batch in [0, 1]")
    assert pca.shape == (200, 5)
    assert load_array(h5ad, where="`cell type` != 'T cell'").shape == (200, 20)


@pytest.mark.parametrize(
    "spec, where, message",
    [
        (":obsm/X_pcaa", None, r"no obsm/X_pcaa \(its obsm: X_pca\); did you mean obsm/X_pca"),
        (":X_pca", None, r"unknown key 'X_pca'.*did you mean obsm/X_pca"),
        (":layers/raw", None, r"no layers/raw \(its layers: counts\)"),
        ("", 'condition = "control"', "cannot read the selection"),
        ("", '__import__("os").system("true")', "cannot read the selection"),
        ("", "condition == control and batch == 1", "cannot read the selection"),
        (
            "",
            "conditon == control",
            "column 'conditon', which obs does not have.*did you mean 'condition'",
        ),
        ("", "condition == placebo", r"matches none of the 400 rows.*'control', 'drug'"),
        ("", "batch == one", "holds numbers, and 'one' is not a number"),
    ],
)
def test_h5ad_errors(cells, spec, where, message):
    with pytest.raises(InputError, match=message):
        load_array(f"{cells / 'cells.h5ad'}{spec}", "source", where=where)


def test_too_many_values(cells, monkeypatch):
    monkeypatch.setattr(mio, "MAX_H5AD_VALUES", 1000)
    with pytest.raises(InputError, match=r"400 rows × 20 columns = 8,000 values.*obsm/X_pca"):
        load_array(cells / "cells.h5ad")


def test_selection_of_other_files_and_problems(cells, tmp_path):
    with pytest.raises(InputError, match="applies to an .h5ad file"):
        load_array(cells / "plain.csv", where="condition == control")
    r = run_here(
        "fit", "--source", str(cells / "plain.csv"), "--source-where", "a == 1",
        "--out", str(tmp_path / "a"),
    )  # fmt: skip
    assert r.returncode == 2 and "applies to an .h5ad file" in r.stderr
    r = run_here("fit", "--source-where", "a == 1", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "--source-where selects rows of --source" in r.stderr
    r = run_here(
        "fit", "--source", str(cells / "plain.csv"), "--target-where", "a == 1",
        "--out", str(tmp_path / "c"),
    )  # fmt: skip
    assert r.returncode == 2 and "--target-where selects rows of --target samples:" in r.stderr


def test_select_rows_forms():
    obs = pd.DataFrame(
        {"kind": pd.Categorical(["a", "b", "c"]), "n": [1, 2, 3], "ok": [True, False, True]}
    )
    assert select_rows(obs, "kind in ['a', c]").tolist() == [True, False, True]
    assert select_rows(obs, "kind!='a'").tolist() == [False, True, True]
    assert select_rows(obs, "n in [2, 3.0]").tolist() == [False, True, True]
    assert select_rows(obs, "ok == true").tolist() == [True, False, True]


def test_missing_extra(cells, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "anndata", None)  # `import anndata` fails
    with pytest.raises(InputError) as err:
        load_array(cells / "cells.h5ad")
    assert str(err.value) == MISSING
    r = run_here("fit", "--source", str(cells / "cells.h5ad"), "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == f"mongeflow: error: {MISSING}"


def test_data_problem_takes_anndata_and_dataframes(cells):
    adata = anndata.read_h5ad(cells / "cells.h5ad")
    assert data_problem(adata, validation=0).dim == 20  # X
    control = adata[adata.obs["condition"] == "control"]
    assert data_problem(control.obsm["X_pca"], validation=0).source.data.shape == (200, 5)
    frame = pd.DataFrame(adata.obsm["X_pca"], columns=list("abcde"))
    assert data_problem(frame).dim == 5
    frame["label"] = "x"
    with pytest.raises(InputError, match="column 'label' is not numeric"):
        data_problem(frame)


@pytest.mark.slow  # 18 s cold on 2 cores; `pytest -m slow` runs it
def test_a_quoted_csv_header_comes_out_unquoted(run, cells, tmp_path):
    lines = (cells / "control.csv").read_text().splitlines()
    quoted = tmp_path / "quoted.csv"  # as R's write.csv and spreadsheets write it
    names = lines[0].split(",")
    quoted.write_text(",".join(f'"{n}"' for n in names) + "\n" + "\n".join(lines[1:]) + "\n")
    r = run_here("apply", str(run), "--input", str(quoted), "--output", str(tmp_path / "y.csv"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "y.csv").read_text().splitlines()[0] == ",".join(names)


def test_target_where_with_a_gaussian_source_and_a_non_text_selection_are_refused(cells, tmp_path):
    h5ad = cells / "cells.h5ad"
    r = run_here(
        "fit", "--source", "gaussian", "--dim", "5", "--quiet", "--out", str(tmp_path / "g"),
        *("--target", f"samples:{h5ad}:obsm/X_pca", "--target-where", "condition == drug"),
    )  # fmt: skip
    assert r.returncode == 2 and "--target-where" in r.stderr, r.stderr
    import anndata

    obs = anndata.read_h5ad(h5ad).obs
    with pytest.raises(mio.InputError, match="a selection must be text"):
        mio.select_rows(obs, 123, "cells")
