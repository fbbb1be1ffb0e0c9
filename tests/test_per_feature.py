"""One scale per feature: the map in the data's units (Jacobian, log det, inverse, density,
save/load), the standardisation of data and target samples, and a fit that learns the map
optimal for the rescaled cost, against its closed form."""

import json
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

import mongeflow as mf
from mongeflow.io import DataWarning, InputError, data_problem
from mongeflow.mapping import load, save
from mongeflow.maps import AffinePotential, MongeMap
from mongeflow.metrics import source_with_map
from mongeflow.problems.base import Gaussian
from mongeflow.problems.gaussian import bures_map
from mongeflow.problems.standardise import standardize
from tests.test_cli import run_here

SCALES = jnp.array([0.5, 20.0, 3.0])


class _Curved(eqx.Module):
    """φ(z) = ½ zᵀAz + Σ_k softplus(w_k·z): strictly convex and not quadratic."""

    A: jax.Array
    W: jax.Array
    dim: int = eqx.field(static=True)

    def __init__(self, dim: int, key):
        k1, k2 = jax.random.split(key)
        B = jax.random.normal(k1, (dim, dim)) / np.sqrt(dim)
        self.A, self.W, self.dim = (
            B @ B.T + 0.5 * jnp.eye(dim),
            jax.random.normal(k2, (4, dim)),
            dim,
        )

    def __call__(self, z):
        return 0.5 * z @ self.A @ z + jnp.sum(jax.nn.softplus(self.W @ z))


@pytest.mark.parametrize("target_shift", [None, jnp.array([1.0, -2.0, 5.0])])
def test_a_map_with_one_scale_per_feature_is_consistent_in_the_data_units(target_shift):
    phi = _Curved(3, jax.random.key(0))
    T = MongeMap(phi, shift=jnp.array([10.0, 0.0, -3.0]), scale=SCALES, target_shift=target_shift)
    assert T.per_feature
    x = T.to_data_units(jax.random.normal(jax.random.key(1), (5, 3)))
    # T(x) by hand: ∇φ((x − m)/s), times s and plus m1 when the target is standardised
    z = (x - T.shift[None, :]) / SCALES[None, :]
    w = jax.vmap(jax.grad(phi))(z)
    expected = w if target_shift is None else target_shift[None, :] + SCALES[None, :] * w
    np.testing.assert_allclose(T(x), expected, rtol=1e-5, atol=1e-5)
    # the Jacobian against automatic differentiation of T, the log det against it
    jac = jax.vmap(jax.jacfwd(T.transport))(x)
    np.testing.assert_allclose(T.jacobian(x), jac, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        T.log_det_jacobian(x), jnp.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-4
    )
    # the inverse in the data's units
    np.testing.assert_allclose(T.inverse(T(x)), x, rtol=1e-4, atol=1e-3)


def test_the_density_of_a_per_feature_map_is_the_closed_form_gaussian():
    # φ(z) = ½ zᵀAz, z = D⁻¹(x − m), γ = N(0, I): T(x) = A D⁻¹(x − m), so the source the
    # map implies is x = m + D A⁻¹ y, y ~ N(0, I): N(m, D A⁻² D)
    A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.7]])
    m, D = np.array([1.0, -1.0, 4.0]), np.diag(np.asarray(SCALES, np.float64))
    T = MongeMap(AffinePotential(3, A=A), shift=m, scale=SCALES, target=Gaussian.standard(3))
    Ainv = np.linalg.inv(A)
    law = multivariate_normal(m, D @ Ainv @ Ainv @ D)
    x = law.rvs(size=50, random_state=0).astype(np.float32)
    np.testing.assert_allclose(T.log_density(x), law.logpdf(x), rtol=1e-4, atol=1e-3)
    # and its samples have that law's spread, column by column
    s = np.asarray(T.sample(jax.random.key(0), 20_000))
    np.testing.assert_allclose(s.std(0), np.sqrt(np.diag(law.cov)), rtol=0.03)


def test_per_feature_data_are_unit_scale_in_every_column_and_not_warned_about():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) * [0.01, 1.0, 400.0] + [5.0, 0.0, -100.0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = data_problem(x, per_feature=True)
    assert not any(issubclass(w.category, DataWarning) for w in caught)
    assert p.per_feature and len(p.scale) == 3
    np.testing.assert_allclose(np.asarray(p.source.data).std(0), 1.0, rtol=1e-4)
    assert 0.005 < p.scale[0] < 0.02 and 200 < p.scale[2] < 800
    # the validation rows are scaled alike
    assert np.asarray(p.validation).std(0).max() < 1.5
    with pytest.raises(InputError, match="cannot be combined with standardize=False"):
        data_problem(x, standardize=False, per_feature=True)
    with pytest.raises(InputError, match="column 1 has the same value"):
        data_problem(np.c_[x[:, :1], np.ones(500)], per_feature=True)


def test_per_feature_target_samples_share_each_column_scale():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 2)) * [1.0, 100.0]
    y = rng.normal(size=(400, 2)) * [3.0, 100.0] + 7.0
    p = data_problem(x, mf.EmpiricalTarget(y), per_feature=True, validation=0.0)
    # s_j² = ½ (var x_j + var y_j): √5 and 100 here, up to sampling error
    np.testing.assert_allclose(p.scale, [np.sqrt(5.0), 100.0], rtol=0.1)
    z, w = np.asarray(p.source.data), np.asarray(p.target.data)
    np.testing.assert_allclose(0.5 * (z.var(0) + w.var(0)), 1.0, rtol=1e-4)
    flat = np.c_[x[:, :1], np.zeros(400)]
    with pytest.raises(InputError, match="column 1 has one value"):
        data_problem(flat, mf.EmpiricalTarget(np.c_[y[:, :1], np.zeros(400)]), per_feature=True)


def test_a_per_feature_map_survives_save_and_load(tmp_path):
    icnn = mf.default_potential(3)(jax.random.key(2))
    params, static = eqx.partition(icnn, eqx.is_inexact_array)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(5), len(leaves))
    moved = [a + 0.1 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    phi = eqx.combine(jax.tree_util.tree_unflatten(tree, moved), static)
    y = np.random.default_rng(3).normal(size=(50, 3)).astype(np.float32)
    T = MongeMap(
        phi,
        shift=jnp.zeros(3),
        scale=SCALES,
        target=mf.EmpiricalTarget((y - 1.0) / np.asarray(SCALES)),
        target_shift=jnp.ones(3),
    )
    save(T, tmp_path / "m")
    assert len(json.loads((tmp_path / "m" / "map.json").read_text())["scale"]) == 3
    # the target's rows are saved in the user's units
    np.testing.assert_allclose(np.load(tmp_path / "m" / "target.npy"), y, rtol=1e-5, atol=1e-5)
    back = load(tmp_path / "m")
    x = jax.random.normal(jax.random.key(4), (7, 3))
    np.testing.assert_allclose(back(x), T(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.target.data, T.target.data, rtol=1e-5, atol=1e-6)


def test_standardize_per_feature_keeps_the_true_map_of_a_built_in_problem():
    raw = mf.get_problem("dense-potential", dim=3)
    p = standardize(raw, per_feature=True)
    assert p.per_feature and len(set(p.scale)) == 3
    z, t = source_with_map(p, jax.random.key(0), 2000)
    np.testing.assert_allclose(np.asarray(z).std(0), 1.0, atol=0.1)
    # the pairs are those of the raw problem, seen through x = m + D z
    x = np.asarray(p.shift) + np.asarray(z) * np.asarray(p.scale)
    np.testing.assert_allclose(jax.vmap(raw.true_map)(jnp.asarray(x)), t, rtol=1e-3, atol=1e-3)


@pytest.mark.slow  # 11 s cold on 2 cores; `pytest -m slow` runs it
def test_a_per_feature_fit_learns_the_map_optimal_for_the_rescaled_cost():
    """Source N(0, Σ0) in units of very different sizes, γ = N(0, Σ1) correlated. With one
    scale per feature, z = D⁻¹x and the learnt map is x ↦ B D⁻¹x, B the Bures map from
    Cov z = D⁻¹Σ0D⁻¹ to Σ1; it differs from the Euclidean Bures map of x ↦ γ."""
    rng = np.random.default_rng(0)
    D = np.diag([1.0, 100.0])
    cov0 = D @ np.array([[1.0, 0.6], [0.6, 1.0]]) @ D
    cov1 = np.array([[1.0, -0.5], [-0.5, 2.0]])
    x = rng.multivariate_normal(np.zeros(2), cov0, size=4000)
    problem = data_problem(x, Gaussian(jnp.zeros(2), cov1), per_feature=True)
    res = mf.fit(problem, mf.Adam(learning_rate=0.02, decay_steps=600), steps=600, seed=0)
    T = res.map()
    s = np.asarray(problem.scale)
    held = x[:500] - np.asarray(problem.shift)
    emp = np.cov((x / s).T)
    expected = (held / s) @ bures_map(emp, cov1).T
    euclidean = held @ bures_map(np.cov(x.T), cov1).T
    err = np.mean(np.sum((np.asarray(T(x[:500])) - expected) ** 2, 1)) / np.trace(cov1)
    apart = np.mean(np.sum((euclidean - expected) ** 2, 1)) / np.trace(cov1)
    assert err < 0.01 and apart > 0.1, (err, apart)


@pytest.mark.slow
def test_per_feature_through_the_cli(tmp_path):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "x.npy", rng.normal(size=(600, 2)) * [0.01, 300.0] + [1.0, 50.0])
    out = tmp_path / "run"
    r = run_here(
        "fit",
        "--source",
        str(tmp_path / "x.npy"),
        "--per-feature",
        "--scheme",
        "adam",
        "--steps",
        "60",
        "--quiet",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DataWarning" not in r.stderr and "features' standard deviations" not in r.stderr
    assert json.loads((out / "run.json").read_text())["settings"]["per_feature"] is True
    assert json.loads((out / "metrics.json").read_text())["per_feature"] is True
    scale = json.loads((out / "map.json").read_text())["scale"]
    assert len(scale) == 2 and scale[1] / scale[0] > 1e4
    y = np.asarray(load(out)(np.load(tmp_path / "x.npy")))
    # pushed to N(0, I): each column of T(x) has about unit spread
    np.testing.assert_allclose(y.std(0), 1.0, atol=0.15)
