"""Targets known by samples: both sides standardised with one scale, the map in the user's
units, saved with its target rows, and one clear line for each kind of bad input."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mongeflow as mf
from mongeflow.io import InputError, check_batch_size, data_problem, parse_target
from mongeflow.mapping import FORMAT, FORMAT_TARGET_STANDARDIZED, load, save
from mongeflow.maps import ICNN, MongeMap
from mongeflow.metrics import energy_distance, evaluate
from mongeflow.problems import EmpiricalSource, EmpiricalTarget, Gaussian, Problem
from mongeflow.problems.standardise import standardize
from tests.test_cli import run_here


def _msq(rows) -> float:
    """mean |r − mean r|² / d."""
    rows = np.asarray(rows, np.float64)
    return float(np.mean(np.sum((rows - rows.mean(0)) ** 2, axis=1)) / rows.shape[1])


def _two_sample_rows(n=600, d=2, seed=0):
    """x ~ N((3, −1), diag(4, 0.25)) and y, a skewed cloud around (−2, 5)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * [2.0, 0.5][:d] + [3.0, -1.0][:d]
    g = rng.normal(size=(n, d))
    y = np.c_[g[:, :1], g[:, 1:] + 0.5 * g[:, :1] ** 2] * 0.7 + [-2.0, 5.0][:d]
    return x, y


# --- standardisation of both sides ---------------------------------------------------------


def test_standardize_poses_both_sides_with_one_scale_and_keeps_the_true_map():
    raw = mf.get_problem("gaussian-pair", dim=3)
    p = standardize(raw)
    x, y = np.asarray(raw.source.data, np.float64), np.asarray(raw.target.data, np.float64)
    assert p.target_standardized and isinstance(p.target, EmpiricalTarget)
    np.testing.assert_allclose(np.asarray(p.shift), x.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p.target_shift), y.mean(0), rtol=1e-6, atol=1e-6)
    assert p.scale == pytest.approx(np.sqrt(0.5 * (_msq(x) + _msq(y))), rel=1e-9)
    z, w = np.asarray(p.source.data, np.float64), np.asarray(p.target.data, np.float64)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(w.mean(0), 0.0, atol=1e-5)
    assert 0.5 * (_msq(z) + _msq(w)) == pytest.approx(1.0, rel=1e-5)  # one scale for both
    m0, m1, s = np.asarray(p.shift), np.asarray(p.target_shift), p.scale
    held, held_target = np.asarray(raw.validation), np.asarray(raw.validation_target)
    np.testing.assert_allclose(p.validation, (held - m0) / s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p.validation_target, (held_target - m1) / s, rtol=1e-5, atol=1e-6)
    # the true map seen from the standardised coordinates: (T*(m0 + s z) − m1)/s
    zv = np.asarray(p.validation[:50])
    expected = (np.asarray(jax.vmap(raw.true_map)(jnp.asarray(m0 + s * zv))) - m1) / s
    np.testing.assert_allclose(jax.vmap(p.true_map)(zv), expected, rtol=1e-5, atol=1e-5)
    # and it pushes the standardised source onto the standardised target (Bures map)
    pushed = np.asarray(jax.vmap(p.true_map)(p.source.data), np.float64)
    np.testing.assert_allclose(pushed.mean(0), 0.0, atol=0.05)
    np.testing.assert_allclose(np.cov(pushed.T), np.cov(w.T), atol=0.05)
    assert standardize(p) is p


def test_density_targets_keep_todays_standardisation():
    raw = mf.get_problem("gaussian", dim=3)
    p = standardize(raw)
    assert p.target_shift is None and not p.target_standardized and p.target is raw.target
    z = np.asarray(p.source.sample(jax.random.key(0), 5))
    x = jnp.asarray(np.asarray(p.shift) + p.scale * z)
    np.testing.assert_allclose(
        jax.vmap(p.true_map)(jnp.asarray(z)), jax.vmap(raw.true_map)(x), rtol=1e-5, atol=1e-6
    )
    x, _ = _two_sample_rows()
    q = data_problem(x, "gaussian")
    assert q.target_shift is None and isinstance(q.target, Gaussian)
    assert _msq(q.source.data) == pytest.approx(1.0, rel=1e-5)  # the source alone sets s


def test_data_problem_standardises_sample_targets_like_standardize():
    x, y = _two_sample_rows(n=400)
    p = data_problem(x, EmpiricalTarget(y), validation=0.1)
    assert p.target_standardized
    assert p.source.data.shape == (360, 2) and p.target.data.shape == (360, 2)
    z, w = np.asarray(p.source.data, np.float64), np.asarray(p.target.data, np.float64)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(w.mean(0), 0.0, atol=1e-5)
    assert 0.5 * (_msq(z) + _msq(w)) == pytest.approx(1.0, rel=1e-5)
    # every row, training or held out, went through the same affine maps
    m0, m1, s = np.asarray(p.shift), np.asarray(p.target_shift), p.scale
    all_x = np.concatenate([z, np.asarray(p.validation)]) * s + m0
    all_y = np.concatenate([w, np.asarray(p.validation_target)]) * s + m1
    np.testing.assert_allclose(np.sort(all_x, 0), np.sort(x, 0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.sort(all_y, 0), np.sort(y, 0), rtol=1e-5, atol=1e-5)
    # posed raw, then standardised by fit: the same coordinates
    raw = data_problem(x, EmpiricalTarget(y), standardize=False)
    assert raw.shift is None and raw.target_shift is None
    again = standardize(raw)
    np.testing.assert_allclose(again.target.data, p.target.data, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(again.validation_target, p.validation_target, atol=1e-5)


def test_a_translated_target_gives_the_same_coordinates(tmp_path):
    x, y = _two_sample_rows(n=300)
    p = data_problem(x, EmpiricalTarget(y))
    q = data_problem(x, EmpiricalTarget(y + 100.0))
    assert q.scale == pytest.approx(p.scale, rel=1e-6)  # y + 100 rounded to float32
    np.testing.assert_allclose(np.asarray(q.target_shift) - np.asarray(p.target_shift), 100.0)
    np.testing.assert_allclose(q.target.data, p.target.data, atol=1e-5)
    np.testing.assert_allclose(q.source.data, p.source.data, rtol=1e-6)
    # samples:FILE rows stay in float64 until standardised: far away, nothing is lost
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "far.npy", y + 1e4)
    p = data_problem(x, f"samples:{tmp_path / 'y.npy'}")
    q = data_problem(x, f"samples:{tmp_path / 'far.npy'}")
    assert q.scale == pytest.approx(p.scale, rel=1e-9)
    np.testing.assert_allclose(q.target.data, p.target.data, atol=1e-6)
    np.testing.assert_allclose(q.validation_target, p.validation_target, atol=1e-6)


# --- the map with a standardised target ------------------------------------------------------


def _flagged_map(target=None):
    """A float64 map whose φ sends z = (x − m)/s to w = (y − m1)/s."""
    phi = ICNN(
        2, jax.random.key(3), widths=(8, 8), quadratic_rank=2, strong_convexity=0.5, dtype=float
    )
    return MongeMap(
        phi,
        shift=jnp.array([3.0, -1.0]),
        scale=2.5,
        target=target,
        target_shift=jnp.array([-2.0, 5.0]),
    )


@pytest.mark.slow  # 19 s cold on 2 cores; `pytest -m slow` runs it
def test_monge_map_with_a_standardised_target():
    with jax.enable_x64(True):
        m = _flagged_map()
        assert m.target_standardized and m.dim == 2
        xn = np.random.default_rng(0).normal(size=(20, 2)) * 2.0 + [3.0, -1.0]
        x = jnp.asarray(xn)
        z = jnp.asarray((xn - np.asarray(m.shift)) / float(m.scale))
        y = m.transport(x)
        grads = np.asarray(jax.vmap(jax.grad(m.potential))(z))
        np.testing.assert_allclose(
            y, np.asarray(m.target_shift) + float(m.scale) * grads, rtol=1e-12
        )
        # T = ∇Φ, Φ(x) = s² φ((x − m)/s) + m1ᵀx: a Brenier map in the user's units
        big_phi = lambda xi: (
            m.scale**2 * m.potential((xi - m.shift) / m.scale) + m.target_shift @ xi
        )
        np.testing.assert_allclose(jax.vmap(jax.grad(big_phi))(x), y, rtol=1e-10)
        np.testing.assert_allclose(m.inverse(y), x, atol=1e-8)
        w = (np.asarray(y) - np.asarray(m.target_shift)) / float(m.scale)
        np.testing.assert_allclose(m.target_to_data_units(w), y, rtol=1e-12)
        # DT against autodiff, and its log det
        auto = jax.vmap(jax.jacfwd(lambda xi: m.transport(xi)))(x)
        np.testing.assert_allclose(m.jacobian(x), auto, rtol=1e-9, atol=1e-12)
        _, logdet = np.linalg.slogdet(np.asarray(auto))
        np.testing.assert_allclose(m.log_det_jacobian(x), logdet, rtol=1e-9)
        # the inverse's derivative is DT⁻¹ (implicit differentiation through the solve)
        inv_jac = jax.jacfwd(lambda yi: m.inverse(yi))(y[0])
        np.testing.assert_allclose(inv_jac @ auto[0], np.eye(2), atol=1e-8)


@pytest.mark.slow  # 9 s cold on 2 cores; `pytest -m slow` runs it
def test_log_density_and_sample_with_a_standardised_target():
    with jax.enable_x64(True):
        # γ held in w: N(μw, Σw); in the target's units it is N(m1 + s μw, s² Σw)
        mean_w, cov_w = jnp.array([0.3, -0.2]), jnp.array([[1.0, 0.3], [0.3, 0.5]])
        m = _flagged_map(Gaussian(mean_w, cov_w))
        in_units = Gaussian(m.target_shift + m.scale * mean_w, m.scale**2 * cov_w)
        x = jnp.asarray(np.random.default_rng(1).normal(size=(10, 2)) + [3.0, -1.0])
        auto = jax.vmap(jax.jacfwd(lambda xi: m.transport(xi)))(x)
        expected = jax.vmap(in_units.log_prob)(m.transport(x)) + np.linalg.slogdet(auto)[1]
        np.testing.assert_allclose(m.log_density(x), expected, rtol=1e-10)
        # sample: y ~ γ, then x = T⁻¹(y); with target rows, T(x) are rows in the user's units
        rows = jnp.asarray(np.random.default_rng(2).normal(size=(7, 2)))
        m = _flagged_map(EmpiricalTarget(rows))
        xs = m.sample(jax.random.key(0), 30)
        back = np.asarray(m.transport(xs))
        user_rows = np.asarray(m.target_shift) + float(m.scale) * np.asarray(rows)
        nearest = np.min(np.linalg.norm(back[:, None, :] - user_rows[None], axis=-1), axis=1)
        assert nearest.max() < 1e-8
        with pytest.raises(ValueError, match="known by samples only: it has no density"):
            m.log_density(x)


# --- fitting: a translated target, the result's map, the metrics' units ---------------------


def _map_of(res):
    """The fitted map in the user's units (seed 0)."""
    return res.map(0)


@pytest.fixture(scope="module")
def translated_fits():
    x, y = _two_sample_rows(n=300)
    fits = []
    for offset in (0.0, 100.0):
        p = data_problem(x, EmpiricalTarget(y + offset))
        fits.append(mf.fit(p, "adam", steps=30, batch_size=128, eval_size=200, final_eval_size=0))
    return x, y, fits


@pytest.mark.slow  # 8 s cold on 2 cores; `pytest -m slow` runs it
def test_a_translated_target_gives_the_same_map_moved(translated_fits):
    x, y, (plain, moved) = translated_fits
    t_plain, t_moved = _map_of(plain), _map_of(moved)
    np.testing.assert_allclose(
        np.asarray(t_moved.transport(x)), np.asarray(t_plain.transport(x)) + 100.0, atol=2e-3
    )
    # the map moved the source onto the target's rows (in the user's units)
    before = float(energy_distance(jnp.asarray(x), jnp.asarray(y)))
    after = float(energy_distance(t_plain.transport(jnp.asarray(x)), jnp.asarray(y)))
    assert after < 0.1 * before


@pytest.mark.slow  # 11 s cold on 2 cores; `pytest -m slow` runs it
def test_fit_result_map_carries_the_target_shift(translated_fits):
    _, _, (plain, _) = translated_fits
    assert plain.map().target_standardized


@pytest.mark.slow  # its fixture: 11 s cold on 2 cores; `pytest -m slow` runs it
def test_transport_cost_is_in_the_data_units(translated_fits):
    x, _, (_, moved) = translated_fits
    p = moved.problem
    figures = evaluate(p, moved.select(0), jax.random.key(0), 200)
    t = _map_of(moved)
    x_val = np.asarray(t.to_data_units(p.validation))
    cost = np.mean(np.sum((x_val - np.asarray(t.transport(x_val))) ** 2, axis=1))
    assert cost > 100.0**2  # the target is 100 away in each coordinate
    assert float(figures["transport_cost"]) == pytest.approx(cost, rel=1e-4)


# --- saving and loading a map whose target is known by samples ------------------------------


@pytest.mark.slow  # 7 s cold on 2 cores; `pytest -m slow` runs it
def test_save_and_load_a_two_sample_map_then_sample(tmp_path):
    rows = jnp.asarray(np.random.default_rng(4).normal(size=(40, 2)), jnp.float32)
    phi = ICNN(2, jax.random.key(5), widths=(8, 8), quadratic_rank=2, strong_convexity=0.5)
    m = MongeMap(
        phi, shift=[3.0, -1.0], scale=2.5, target=EmpiricalTarget(rows), target_shift=[-2.0, 5.0]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the target is saved: nothing to warn about
        save(m, tmp_path / "map")
    meta = json.loads((tmp_path / "map" / "map.json").read_text())
    assert meta["format"] == FORMAT_TARGET_STANDARDIZED
    assert meta["target_shift"] == [-2.0, 5.0]
    assert meta["target"]["kind"] == "samples" and meta["target"]["n"] == 40
    # target.npy holds the rows in the user's units, y = target_shift + scale · w
    saved = np.load(tmp_path / "map" / "target.npy")
    np.testing.assert_allclose(saved, np.array([-2.0, 5.0]) + 2.5 * np.asarray(rows), rtol=1e-6)
    back = load(tmp_path / "map")
    assert back.target_standardized and isinstance(back.target, EmpiricalTarget)
    np.testing.assert_allclose(back.target.data, rows, rtol=1e-5, atol=1e-6)
    x = jnp.asarray([[3.0, -1.0], [4.0, 0.0]])
    np.testing.assert_allclose(back.transport(x), m.transport(x), rtol=1e-6)
    np.testing.assert_allclose(
        back.sample(jax.random.key(1), 5), m.sample(jax.random.key(1), 5), rtol=1e-5, atol=1e-5
    )
    # the command line: sample works, density refuses in one clear line
    np.save(tmp_path / "x.npy", np.asarray(x))
    r = run_here("sample", str(tmp_path / "map"), "-n", "6", "--output", str(tmp_path / "s.npy"))
    assert r.returncode == 0, r.stderr
    drawn = np.load(tmp_path / "s.npy")
    assert drawn.shape == (6, 2) and np.all(np.isfinite(drawn))
    user_rows = np.asarray(back.target_to_data_units(rows))
    pushed = np.asarray(back.transport(drawn))
    assert np.min(np.linalg.norm(pushed[:, None] - user_rows[None], axis=-1), axis=1).max() < 1e-2
    r = run_here(
        "density", str(tmp_path / "map"), "--input", str(tmp_path / "x.npy"), "--output", "d.npy"
    )
    assert r.returncode == 2 and "known by samples only" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    # a map saved later in the same directory, without sample target, drops target.npy
    save(MongeMap(phi, dim=2), tmp_path / "map")
    assert not (tmp_path / "map" / "target.npy").exists()
    assert json.loads((tmp_path / "map" / "map.json").read_text())["format"] == FORMAT


def test_old_and_damaged_saved_maps(tmp_path):
    phi = ICNN(2, jax.random.key(5), widths=(8, 8))
    save(MongeMap(phi, dim=2), tmp_path / "old")
    meta_file = tmp_path / "old" / "map.json"
    meta = json.loads(meta_file.read_text())
    assert "target_shift" not in meta and meta["format"] == FORMAT
    # a map saved before targets by samples were saved: loads, without its target, warned
    meta["target"] = {"kind": "unsaved", "type": "EmpiricalTarget"}
    meta_file.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="was not saved"):
        old = load(tmp_path / "old")
    assert old.target is None and not old.target_standardized
    # a two-sample map whose target.npy is gone
    rows = jnp.asarray(np.arange(8.0).reshape(4, 2))
    save(MongeMap(phi, target=EmpiricalTarget(rows), target_shift=[0.0, 1.0]), tmp_path / "new")
    (tmp_path / "new" / "target.npy").unlink()
    with pytest.raises(InputError, match="cannot rebuild the map's target.*does not exist"):
        load(tmp_path / "new")
    loaded = load(tmp_path / "new", target=EmpiricalTarget(rows))
    assert loaded.target_standardized


# --- bad input ---------------------------------------------------------------------------------


def test_target_samples_with_nan_or_inf_are_refused_with_the_row_and_column(tmp_path):
    x, y = _two_sample_rows(n=50)
    y[7, 1] = np.nan
    y[9, 0] = np.inf
    with pytest.raises(InputError, match=r"target samples: 2 NaN/inf .* row 7, column 1") as err:
        data_problem(x, EmpiricalTarget(y))
    assert "expected finite numbers" in str(err.value)
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(InputError, match=r"y\.npy.*row 7, column 1.*expected finite"):
        parse_target(f"samples:{tmp_path / 'y.npy'}", 2)
    np.save(tmp_path / "x.npy", x)
    r = run_here(
        "fit",
        *("--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"),
        *("--steps", "2", "--quiet", "--out", str(tmp_path / "r")),
    )
    assert r.returncode == 2 and "row 7, column 1" in r.stderr and "Traceback" not in r.stderr


def test_a_batch_larger_than_the_target_rows_is_refused(tmp_path):
    x, y = _two_sample_rows(n=400)
    p = data_problem(x, EmpiricalTarget(y[:50]))  # 45 target rows after the split
    assert p.training_sizes() == (360, 45)
    check_batch_size(p, 45)
    check_batch_size(p, None)
    with pytest.raises(InputError, match="larger than the 45 training samples of the target"):
        check_batch_size(p, 46)
    with pytest.raises(InputError, match="larger than the 360 training samples of the source"):
        check_batch_size(p, 361)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:50])
    r = run_here(
        "fit",
        *("--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"),
        *("--batch-size", "64", "--steps", "2", "--quiet", "--out", str(tmp_path / "r")),
    )
    assert r.returncode == 2, r.stderr
    assert "larger than the 45 training samples of the target" in r.stderr
    assert "after the validation split" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r" / "run.json").exists()  # refused before anything is written


def test_problem_refuses_a_target_shift_without_a_shift():
    with pytest.raises(ValueError, match="target_shift is set but shift is not"):
        Problem(
            "p",
            EmpiricalSource(jnp.ones((3, 2))),
            EmpiricalTarget(jnp.ones((3, 2))),
            target_shift=jnp.zeros(2),
        )
