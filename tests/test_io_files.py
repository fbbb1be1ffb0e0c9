"""Reading arrays by FILE.npz:KEY, and data_problem: where data become a Problem."""

import numpy as np
import pytest

from mongeflow.io import InputError, data_problem, load_array
from mongeflow.problems import EmpiricalSource, Gaussian, PotentialTarget


def samples(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) * [3.0, 0.5] + [10.0, -4.0]


@pytest.fixture
def npz(tmp_path):
    x = samples()
    path = tmp_path / "several.npz"
    np.savez(path, x=x, y=x[:5] + 1.0, labels=np.arange(3))
    return path, x


def test_npz_with_several_arrays_needs_a_key(npz):
    path, _ = npz
    with pytest.raises(InputError, match=r"several arrays \(x, y, labels\).*several\.npz:KEY"):
        load_array(path)
    with pytest.raises(InputError, match=r"several arrays"):
        load_array(str(path))


def test_npz_key_selects_the_array(npz):
    path, x = npz
    np.testing.assert_array_equal(load_array(f"{path}:x"), x)
    np.testing.assert_array_equal(load_array(f"{path}:y"), x[:5] + 1.0)


def test_unknown_npz_key_lists_the_keys(npz):
    path, _ = npz
    with pytest.raises(InputError, match=r"no array 'z'; its arrays: x, y, labels"):
        load_array(f"{path}:z")


def test_single_array_npz_needs_no_key(tmp_path):
    x = samples()
    np.savez(tmp_path / "one.npz", whatever=x)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), x)
    np.testing.assert_array_equal(load_array(f"{tmp_path}/one.npz:whatever"), x)


def test_key_for_a_file_that_is_not_npz(tmp_path):
    np.save(tmp_path / "a.npy", samples())
    with pytest.raises(InputError, match=r"selects one array of an \.npz file.*\.npy file"):
        load_array(f"{tmp_path}/a.npy:x")


def test_missing_npz_with_key_is_a_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"'.*nothere\.npz' does not exist"):
        load_array(f"{tmp_path}/nothere.npz:x")


def test_key_names_the_array_in_data_errors(tmp_path):
    np.savez(tmp_path / "b.npz", good=samples(), flat=np.arange(4.0))
    with pytest.raises(InputError, match=r"array 'flat'.*1-D array"):
        load_array(f"{tmp_path}/b.npz:flat")


def test_data_problem_standardises(tmp_path):
    x = samples(500)
    problem = data_problem(x, standardize=True, validation=0.0, name="cloud")
    assert problem.name == "cloud" and problem.dim == 2
    assert isinstance(problem.source, EmpiricalSource) and isinstance(problem.target, Gaussian)
    z = np.asarray(problem.source.data, dtype=np.float64)
    np.testing.assert_allclose(z.mean(0), [0.0, 0.0], atol=1e-5)
    # one overall scale: mean squared norm d (coordinates keep their relative spread)
    assert np.mean(np.sum(z**2, axis=1)) / 2 == pytest.approx(1.0, rel=1e-5)
    assert z[:, 0].std() / z[:, 1].std() == pytest.approx(x[:, 0].std() / x[:, 1].std(), 1e-4)
    np.testing.assert_allclose(problem.shift, x.mean(0), rtol=1e-6)
    expected_scale = np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, axis=1)) / 2)
    assert problem.scale == pytest.approx(expected_scale, rel=1e-12)
    np.testing.assert_allclose(z * problem.scale + x.mean(0), x, atol=1e-4)


def test_data_problem_without_standardisation():
    x = samples()
    problem = data_problem(x, standardize=False, validation=0.0)
    assert problem.shift is None and problem.scale == 1.0
    np.testing.assert_allclose(problem.source.data, x, rtol=1e-6)


def test_data_problem_targets(tmp_path):
    x = samples()
    target = Gaussian(np.zeros(2), 2.0)
    assert data_problem(x, target).target is target
    with pytest.raises(InputError, match="dimension 2 but the target .* has dimension 3"):
        data_problem(x, Gaussian.standard(3))
    with pytest.raises(InputError, match="specification string or a Target"):
        data_problem(x, 3.0)
    with pytest.raises(InputError, match="unknown target 'student-t'"):
        data_problem(x, "student-t")
    # V is checked at the standardised data: V'' = 1 − 0.012 y² is positive for |y| < 9.1,
    # where the standardised data are, and negative at the raw data (first coordinate ≈ 10)
    (tmp_path / "v.py").write_text(
        "import jax.numpy as jnp\ndef V(y):\n    return jnp.sum(0.5 * y**2 - 0.001 * y**4)\n"
    )
    problem = data_problem(x, f"{tmp_path}/v.py:V", standardize=True)
    assert isinstance(problem.target, PotentialTarget)
    assert problem.target.origin == (str((tmp_path / "v.py").resolve()), "V")
    with pytest.raises(InputError, match="not convex at the data"):
        data_problem(x, f"{tmp_path}/v.py:V", standardize=False)


def test_data_problem_rejects_bad_data():
    with pytest.raises(InputError, match="all 5 samples are equal"):
        data_problem(np.ones((5, 2)), standardize=True)
    with pytest.raises(InputError, match="1-D array"):
        data_problem(np.arange(5.0))
    with pytest.raises(InputError, match="NaN/inf"):
        data_problem(np.array([[0.0, np.nan], [1.0, 2.0]]))
