"""Bad settings and bad data are refused (or warned about) before anything is trained, with a
message that says what was wrong and what was expected."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow import cli
from mongeflow.divergences import DIVERGENCES, get_divergence
from mongeflow.io import DataWarning, InputError, check_potential, data_problem, load_array
from mongeflow.problems import PotentialTarget
from mongeflow.schemes import SCHEMES, get_scheme
from mongeflow.settings import SettingError, configure, options

NAN, INF = math.nan, math.inf

# --- numeric settings ----------------------------------------------------------------------


def run_cli(capsys, monkeypatch, *args):
    """``mongeflow ARGS`` in this process: (exit code, stderr lines)."""
    monkeypatch.setenv("MONGEFLOW_NO_CACHE", "1")  # leave this process's JAX cache alone
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


FIT = ["fit", "--problem", "gaussian", "--dim", "2", "--steps", "5", "--eval-size", "0"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scheme", "explicit", "--tau", "0"], "--tau must be in (0, 100], got 0"),
        (["--scheme", "explicit", "--tau", "-1"], "--tau must be in (0, 100], got -1"),
        (["--scheme", "explicit", "--tau", "1e9"], "--tau must be in (0, 100], got 1e+09"),
        (["--scheme", "implicit", "--tau", "nan"], "--tau must be in (0, 100], got nan"),
        (["--scheme", "adam", "--learning-rate", "-1"], "--learning-rate must be in (0, inf)"),
        (["--scheme", "adam", "--learning-rate", "nan"], "--learning-rate must be in (0, inf)"),
        (["--scheme", "natural", "--halvings", "-1"], "--halvings must be in [0, 30], got -1"),
        (["--divergence", "drift", "--temperatures", "0.1,nan"], "--temperatures must be"),
        (["--strong-convexity", "nan"], "--strong-convexity must be in [0, inf), got nan"),
        (["--strong-convexity", "-1"], "--strong-convexity must be in [0, inf), got -1"),
        (["--batch-size", "0"], "--batch-size must be ≥ 1, got 0"),
        (["--widths", "8", "0"], "--widths must be ≥ 1, got 0"),
        (["--seed", "0", "-1"], "--seed must be in [0, 4294967295], got -1"),
        (["--seed", "4294967296"], "--seed must be in [0, 4294967295], got 4294967296"),
    ],
)
def test_the_command_line_refuses_out_of_range_settings_before_training(
    args, message, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    code, err = run_cli(capsys, monkeypatch, *FIT, *args, "--quiet", "--out", out)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("mongeflow: error: "), err
    assert message in err[0]
    assert not out.exists()  # nothing written


def test_a_bad_setting_with_overwrite_leaves_the_old_run_alone(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    old = '{"format": "mongeflow-run/1", "settings": {}}'
    (out / "run.json").write_text(old)
    args = [*FIT, "--scheme", "explicit", "--tau", "0", "--overwrite", "--quiet", "--out", out]
    code, err = run_cli(capsys, monkeypatch, *args)
    assert code == 2 and "--tau must be in (0, 100]" in err[0], err
    assert (out / "run.json").read_text() == old


def test_fit_help_shows_the_ranges(capsys, monkeypatch):
    monkeypatch.setenv("MONGEFLOW_NO_CACHE", "1")
    with pytest.raises(SystemExit) as exit:
        cli.main(["fit", "--help"])
    assert exit.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--tau" in text and "in (0, 100]" in text


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("explicit", {"tau": 0}, r"^tau must be in \(0, 100\], got 0"),
        ("natural", {"tau": INF}, r"^tau must be in \(0, 100\], got inf"),
        ("euclidean", {"learning_rate": NAN}, r"^learning_rate must be in \(0, inf\), got nan"),
        ("explicit", {"inner_learning_rate": 0.0}, r"^inner_learning_rate must be in \(0, inf\)"),
        ("explicit", {"inner_steps": 0}, r"^inner_steps must be ≥ 1, got 0"),
        ("explicit", {"inner_steps": 2.5}, r"^inner_steps must be a whole number ≥ 1, got 2.5"),
        ("explicit", {"decay_steps": -1}, r"^decay_steps must be ≥ 0, got -1"),
        ("natural", {"halvings": 31}, r"^halvings must be in \[0, 30\], got 31"),
        ("natural", {"metric_damping": -0.1}, r"^metric_damping must be in"),
        ("natural", {"metric_damping": 0.0}, r"^metric_damping must be in \(0, inf\), got 0"),
        ("natural", {"metric_cg_maxiter": 0}, r"^metric_cg_maxiter must be ≥ 1, got 0"),
        ("explicit", {"inner": "lbfgs", "inner_batch_factor": 0}, r"^inner_batch_factor"),
        ("explicit", {"inner": "gauss-newton", "inner_damping": NAN}, r"^inner_damping"),
        ("adam", {"learning_rate": "fast"}, r"^learning_rate must be a number, got 'fast'"),
    ],
)
def test_scheme_settings_are_range_checked(name, settings, message):
    with pytest.raises(ValueError, match=message):
        get_scheme(name, **settings)
    with pytest.raises(ValueError, match=message):
        configure(SCHEMES[name], settings)


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("sinkhorn", {"relative_epsilon": 0.0}, r"^relative_epsilon must be in \(0, inf\)"),
        ("sinkhorn", {"sinkhorn_threshold": 0.0}, r"^sinkhorn_threshold must be in \(0, inf\)"),
        ("sinkhorn", {"sinkhorn_iterations": 0}, r"^sinkhorn_iterations must be ≥ 1"),
        ("energy", {"block_size": 0}, r"^block_size must be ≥ 1, got 0"),
        ("kl", {"epsilon_scale": 0.0}, r"^epsilon_scale must be in \(0, inf\)"),
        ("kl", {"epsilon_scale": NAN}, r"^epsilon_scale must be in \(0, inf\), got nan"),
        ("drift", {"temperatures": "0.1,nan"}, r"^temperatures must be .* got 'nan'"),
        ("drift", {"temperatures": "0.1,abc"}, r"^temperatures must be .* got 'abc'"),
        ("drift", {"temperatures": "0.1,-1"}, r"^temperatures must be .* got '-1'"),
        ("drift", {"temperatures": [0.1, -1.0]}, r"^temperatures must be .* got '-1'"),
        ("drift", {"temperatures": ""}, r"^temperatures must be numbers.* got no number"),
        ("mmd", {"scales": "1,inf"}, r"^scales must be .* got 'inf'"),
        ("mmd", {"scales": "0"}, r"^scales must be .* got '0'"),
    ],
)
def test_divergence_settings_are_range_checked(name, settings, message):
    with pytest.raises(ValueError, match=message):
        get_divergence(name, **settings)


def test_the_library_names_the_argument_and_the_command_line_the_flag(
    tmp_path, capsys, monkeypatch
):
    # the library: the setting's key, as a Python caller gives it
    with pytest.raises(SettingError) as err:
        get_scheme("explicit", tau=0)
    assert str(err.value) == "tau must be in (0, 100], got 0"
    assert err.value.on_command_line() == "--tau must be in (0, 100], got 0"
    with pytest.raises(SettingError) as err:
        get_divergence("sinkhorn", sinkhorn_threshold=-1.0)
    assert str(err.value) == "sinkhorn_threshold must be in (0, inf), got -1"
    with pytest.raises(SettingError) as err:
        get_scheme("natural", metric="gram", metric_damping=0.0)
    assert str(err.value) == "metric_damping must be in (0, inf), got 0"
    # the command line: the flag; refused against every value's range (--tau), or against
    # the value chosen (0 is a valid damping for the identity metric, not for Gram's)
    for args, message in (
        (["--scheme", "explicit", "--tau", "0"], "--tau must be in (0, 100], got 0"),
        (
            ["--divergence", "sinkhorn", "--sinkhorn-threshold", "-1"],
            "--sinkhorn-threshold must be in (0, inf), got -1",
        ),
        (
            ["--scheme", "natural", "--metric", "gram", "--metric-damping", "0"],
            "--metric-damping must be in (0, inf), got 0",
        ),
    ):
        out = tmp_path / "run"
        code, lines = run_cli(capsys, monkeypatch, *FIT, *args, "--quiet", "--out", out)
        assert code == 2 and lines == [f"mongeflow: error: {message}"], lines
        assert not out.exists()


def test_values_at_the_ends_of_the_ranges_are_accepted():
    assert get_scheme("explicit", tau=100.0, decay_steps=0).tau == 100.0
    assert get_scheme("natural", halvings=0, metric="identity", metric_damping=0.0).halvings == 0
    assert get_scheme("adam", learning_rate=10).learning_rate == 10
    assert get_divergence("drift", temperatures="0.5 1").temperatures == (0.5, 1.0)
    assert get_divergence("mmd", scales=[0.25, 4]).scales == (0.25, 4.0)


def test_constructors_refuse_non_finite_numbers():
    from mongeflow.schemes import Explicit, Gram

    with pytest.raises(ValueError, match="tau must be a finite number, got nan"):
        Explicit(tau=NAN)
    with pytest.raises(ValueError, match="damping must be a finite number, got inf"):
        Gram(damping=INF)


def test_every_registered_number_setting_declares_its_range():
    for registry in (SCHEMES, DIVERGENCES):
        for option in options(registry).values():
            if option.kind in ("int", "float", "floats"):
                assert option.ranges, option.dest


# --- CSV files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1.5;2\n3;4.25\n-1;0\n",
        "1.5\t2\n3\t4.25\n-1\t0\n",
        "a;b\n1.5;2\n3;4.25\n-1;0\n",
        "a\tb\n1.5\t2\n3\t4.25\n-1\t0\n",
        "a,b\n1.5,2\n\n3,4.25\n-1,0\n",
        "# u, v\n1.5, 2\n3, 4.25\n-1, 0\n",
    ],
)
def test_csv_separators_and_headers_are_detected(text, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(text)
    np.testing.assert_array_equal(load_array(path), [[1.5, 2.0], [3.0, 4.25], [-1.0, 0.0]])


def test_a_one_column_csv_reads_with_or_without_header(tmp_path):
    for text in ("1\n2\n3\n", "value\n1\n2\n3\n"):
        (tmp_path / "x.csv").write_text(text)
        np.testing.assert_array_equal(load_array(tmp_path / "x.csv"), [[1.0], [2.0], [3.0]])


@pytest.mark.parametrize(
    "text, message",
    [
        ("1;2\n3;x\n5;6\n", r"line 2: .*'x'"),
        ("1,2\n\n3,4,5\n6,7\n", r"line 3 has 3 fields, expected 2"),
        ("title\n1,2\n3,4\n", r"line 1 has 1 field, expected 2"),
        ("a;b\n1,5;2,5\n3,5;4,5\n", r"line 2: .*decimal comma"),
        ("a,b\n", r"a header but no data rows"),
    ],
)
def test_a_csv_that_cannot_be_read_says_where(text, message, tmp_path):
    (tmp_path / "x.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        load_array(tmp_path / "x.csv")


# --- constant columns, float32 range --------------------------------------------------------


def test_a_constant_column_is_warned_about():
    x = np.random.default_rng(0).normal(size=(100, 3))
    x[:, 1] = 7.0
    with pytest.warns(DataWarning, match=r"column 1 has the same value \(7\) in every"):
        data_problem(x)
    with pytest.warns(DataWarning, match="column 1"):
        data_problem(x, standardize=False)


@pytest.mark.filterwarnings("ignore::mongeflow.io.DataWarning")  # the columns' spreads differ
def test_data_beyond_the_float32_range_are_refused_in_float32():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    x[:, 1] = x[:, 1] * 1e30 + 1e39  # the mean is beyond float32, the spread is not
    assert jnp.zeros(()).dtype == jnp.float32
    for standardize in (True, False):
        with pytest.raises(InputError, match=r"column 1 .*float32.*jax_enable_x64"):
            data_problem(x, standardize=standardize)
    with pytest.raises(InputError, match=r"float32.*jax_enable_x64"):
        data_problem(rng.normal(size=(50, 2)) * 1e-42)  # a scale below float32's
    with jax.enable_x64(True):
        p = data_problem(x)
        assert np.all(np.isfinite(np.asarray(p.shift))) and np.isfinite(p.scale)
        assert np.all(np.isfinite(np.asarray(p.source.data)))


def test_the_command_line_refuses_float32_overflow(tmp_path, capsys, monkeypatch):
    x = np.random.default_rng(0).normal(size=(50, 2)) * 1e39
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "run"
    args = ["fit", "--source", tmp_path / "x.npy", "--steps", "5", "--quiet", "--out", out]
    code, err = run_cli(capsys, monkeypatch, *args)
    assert code == 2 and len(err) == 1 and "--float64" in err[0], err
    assert not (out / "map.json").exists()


# --- a user's potential V -------------------------------------------------------------------

V_FILE = """
import jax.numpy as jnp

def nan_far(x):  # NaN where x[0] > 3
    return 0.5 * jnp.sum(x**2) + jnp.where(x[0] > 3.0, jnp.nan, 0.0)

def bad_gradient(x):  # finite, but its gradient is not at x[0] = 4
    return 0.5 * jnp.sum(x**2) + jnp.abs(x[0] - 4.0) ** 0.5 * 0.0 + jnp.abs(x[0] - 4.0) ** 1.5

def concave_far(x):  # convex for x[0] < 3, concave beyond
    return jnp.where(x[0] < 3.0, 0.5 * jnp.sum(x**2), -0.5 * jnp.sum(x**2))
"""


@pytest.fixture
def far_rows(tmp_path):
    """1000 rows in 2-D: the first 300 with x[0] in [-1, 1], the others near x[0] = 4."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(1000, 2))
    x[300:, 0] = 4.0 + rng.uniform(-0.5, 0.5, size=700)
    x[700, 0] = 4.0
    (tmp_path / "v.py").write_text(V_FILE)
    return x, tmp_path / "v.py"


def test_a_potential_that_is_nan_beyond_the_first_rows_is_refused(far_rows):
    x, file = far_rows
    x[300:, 0] = 0.0
    x[700, 0] = 4.0  # the only row where V is NaN
    with pytest.raises(InputError, match=r"V is not finite at data row 700"):
        data_problem(x, f"{file}:nan_far", standardize=False, validation=0.0)


def test_a_potential_whose_gradient_is_not_finite_is_refused(far_rows):
    x, file = far_rows
    with pytest.raises(InputError, match=r"gradient of V is not finite at data row 700"):
        data_problem(x, f"{file}:bad_gradient", standardize=False, validation=0.0)


def test_convexity_is_checked_beyond_the_first_rows(far_rows):
    x, file = far_rows
    with pytest.raises(InputError, match="V is not convex"):
        data_problem(x, f"{file}:concave_far", standardize=False, validation=0.0)


def test_the_potential_check_covers_thousands_of_rows():
    # a V that is NaN at one row far down a large data set: found (the first rows are
    # always among the rows checked, the others drawn with a fixed seed)
    x = np.zeros((3000, 2))
    bad = 2500
    x[bad] = 9.0
    V = lambda z: 0.5 * jnp.sum(z**2) + jnp.where(z[0] > 5.0, jnp.nan, 0.0)
    with pytest.raises(InputError, match=f"data row {bad}"):
        check_potential(PotentialTarget(V, 2), 2, x, "V")
