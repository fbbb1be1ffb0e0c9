"""User data, targets, saved maps, inverse, density, checkpoints (API)."""

import jax
import numpy as np
import pytest

import mongeflow as mf
from mongeflow.io import InputError, check_samples, load_array, parse_target


def gaussian_data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 2)) * [2.0, 0.5] + [3.0, -1.0]


def test_load_array_formats(tmp_path):
    x = gaussian_data(10)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", data=x, other=x[:2])
    np.savetxt(tmp_path / "c.csv", x, delimiter=",", header="u,v", comments="")
    np.savetxt(tmp_path / "d.csv", x, delimiter=",")
    for name in ("a.npy", "b.npz:data", "c.csv", "d.csv"):
        np.testing.assert_allclose(load_array(tmp_path / name), x, rtol=1e-12)


@pytest.mark.parametrize(
    "content, message",
    [
        (np.zeros((0, 2)), "no data"),
        (np.arange(5.0), "1-D array"),
        (np.arange(5.0)[None, :], "one row"),
        (np.array([[1.0, np.inf], [0.0, 0.0]]), "NaN/inf"),
        (np.array([["a", "b"], ["c", "d"]]), "expected numbers"),
    ],
)
def test_check_samples_rejects_bad_arrays(content, message):
    with pytest.raises(InputError, match=message):
        check_samples(content)


def test_parse_target_checks(tmp_path):
    (tmp_path / "v.py").write_text(
        "import jax.numpy as jnp\n"
        "def V(y):\n    return 0.5 * jnp.sum(y**2)\n"
        "def wobbly(y):\n    return 0.5 * y[0] ** 2 - 1e-5 * y[1] ** 2\n"
    )
    data = gaussian_data(50)
    target = parse_target(f"{tmp_path}/v.py:V", 2, data)
    assert target.origin[1] == "V" and float(target.potential(np.ones(2))) == 1.0
    with pytest.warns(UserWarning, match="slightly negative"):
        parse_target(f"{tmp_path}/v.py:wobbly", 2, data)
    with pytest.raises(InputError, match="unknown target"):
        parse_target("student-t", 2, data)
    np.save(tmp_path / "m.npy", np.zeros(3))
    np.save(tmp_path / "c.npy", np.eye(3))
    with pytest.raises(InputError, match="match the data's dimension 2"):
        parse_target(f"gaussian:{tmp_path}/m.npy,{tmp_path}/c.npy", 2, data)


def test_fit_on_data_save_load_inverse_density(tmp_path):
    """Gaussian data N(m, diag(4, 0.25)) to N(0, I): the learnt map is checked against the
    closed form, its inverse against the data, its density against the true density."""
    x = gaussian_data()
    problem = mf.data_problem(x, "gaussian", standardize=True)
    res = mf.fit(problem, "adam", steps=400, batch_size=256, final_eval_size=1000, patience=None)
    probe = x[:200]
    true = (probe - [3.0, -1.0]) / [2.0, 0.5]  # the Monge map of this pair (diagonal)
    m = res.map()
    mapped = np.asarray(m.transport(probe))
    # L2-UVP against the closed form (Var γ = 2); sample noise of 1500 points included
    assert 100 * np.mean(np.sum((mapped - true) ** 2, 1)) / 2 < 2.0
    back = np.asarray(m.inverse(mapped))
    residual = np.linalg.norm(np.asarray(m.transport(back)) - mapped, axis=1)
    assert np.max(residual) < 1e-3 and np.max(np.abs(back - probe)) < 1e-2
    log_true = -0.5 * np.sum(true**2, 1) - np.log(2 * np.pi) - np.log(2.0 * 0.5)
    assert np.median(np.abs(np.asarray(m.log_density(probe)) - log_true)) < 0.1

    mf.save(m, tmp_path / "run")
    loaded = mf.load(tmp_path / "run")
    np.testing.assert_allclose(loaded.transport(probe), mapped, rtol=1e-6, atol=1e-6)
    samples = np.asarray(loaded.sample(jax.random.key(3), 2000))
    assert np.allclose(samples.mean(0), [3.0, -1.0], atol=0.2)
    assert np.allclose(samples.std(0), [2.0, 0.5], rtol=0.1)
    with pytest.raises(InputError, match="not a saved map"):
        mf.load(tmp_path)
