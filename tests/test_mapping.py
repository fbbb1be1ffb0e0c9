"""Saving and loading maps: round trips of the map and of its target, and the messages for
what cannot be saved or read."""

import hashlib
import json
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mongeflow.io import InputError, parse_target
from mongeflow.mapping import load, read_info, save, target_record
from mongeflow.maps import ICNN, AffinePotential, MongeMap
from mongeflow.problems import EmpiricalTarget, Gaussian, PotentialTarget

SHIFT = jnp.array([0.5, -2.0])
POINTS = jnp.array([[0.0, 0.0], [1.0, -1.0], [-2.0, 3.0]])


@pytest.fixture(scope="module")
def phi():
    """An ICNN with parameters that are not its initial ones (what a load must restore)."""
    icnn = ICNN(2, jax.random.key(3), widths=(8, 8), strong_convexity=0.2)
    return jax.tree_util.tree_map(lambda a: a + 0.05 if eqx.is_inexact_array(a) else a, icnn)


def test_round_trip_restores_the_map(phi, tmp_path):
    m = MongeMap(phi, SHIFT, 1.7, Gaussian.standard(2))
    info = {"steps": 12, "metrics": {"kl": np.float32(0.25)}, "seed": np.int64(4)}
    assert save(m, tmp_path / "run", info=info) == tmp_path / "run"
    back = load(tmp_path / "run")
    np.testing.assert_array_equal(back.transport(POINTS), m.transport(POINTS))
    np.testing.assert_array_equal(back.shift, m.shift)
    assert float(back.scale) == pytest.approx(1.7, rel=1e-7)
    assert read_info(tmp_path / "run") == {"steps": 12, "metrics": {"kl": 0.25}, "seed": 4}
    meta = json.loads((tmp_path / "run" / "map.json").read_text())
    assert meta["format"] == "mongeflow-map/1" and meta["potential"]["class"] == "ICNN"


def test_gaussian_target_round_trips(tmp_path):
    target = Gaussian(jnp.array([1.0, -1.0]), jnp.array([[2.0, 0.3], [0.3, 0.5]]))
    m = MongeMap(AffinePotential(2, A=jnp.diag(jnp.array([2.0, 0.5]))), SHIFT, 2.0, target)
    save(m, tmp_path)
    back = load(tmp_path)
    assert isinstance(back.target, Gaussian)
    np.testing.assert_allclose(back.target.mean, target.mean, rtol=1e-7)
    np.testing.assert_allclose(back.target.cov, target.cov, rtol=1e-7)
    np.testing.assert_allclose(back.log_density(POINTS), m.log_density(POINTS), rtol=1e-6)
    assert read_info(tmp_path) == {}


def test_potential_target_from_a_file_round_trips(phi, tmp_path):
    (tmp_path / "v.py").write_text(
        "import jax.numpy as jnp\ndef V(y):\n    return 0.5 * jnp.sum((y - 1.0) ** 2)\n"
    )
    data = np.random.default_rng(0).normal(size=(20, 2))
    target = parse_target(f"{tmp_path}/v.py:V", 2, data)
    assert target.origin == (str((tmp_path / "v.py").resolve()), "V")
    record = target_record(target)
    assert record == {
        "kind": "python",
        "dim": 2,
        "file": target.origin[0],
        "name": "V",
        "sha256": hashlib.sha256((tmp_path / "v.py").read_bytes()).hexdigest(),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a target from a file is recorded: no warning
        save(MongeMap(phi, target=target), tmp_path / "map")
    # loading runs no code: V comes back only when named
    with pytest.warns(UserWarning, match=r"never imported by load.*target='.*v\.py:V'"):
        assert load(tmp_path / "map").target is None
    back = load(tmp_path / "map", target=f"{tmp_path}/v.py:V")
    assert isinstance(back.target, PotentialTarget) and back.target.origin == target.origin
    assert float(back.target.potential(jnp.array([3.0, 1.0]))) == pytest.approx(2.0)
    # V is known only up to its constant: density needs it, and says so
    with pytest.raises(ValueError, match="normalising constant"):
        back.log_density(POINTS)
    # the file gone: a clear message
    (tmp_path / "v.py").unlink()
    with pytest.raises(InputError, match=r"does not exist"):
        load(tmp_path / "map", target=f"{tmp_path}/v.py:V")
    assert load(tmp_path / "map", target=Gaussian.standard(2)).target.dim == 2


def test_python_function_target_warns_and_is_given_back(phi, tmp_path):
    log_z = float(np.log(2 * np.pi))  # V = ½|y|²: γ = N(0, I)
    target = PotentialTarget(lambda y: 0.5 * y @ y, 2, log_normaliser=log_z)
    m = MongeMap(phi, target=target)
    with pytest.warns(UserWarning, match=r"not saved.*load\(path, target=\.\.\.\)"):
        save(m, tmp_path)
    assert json.loads((tmp_path / "map.json").read_text())["target"] == {
        "kind": "unsaved",
        "type": "PotentialTarget",
    }
    with pytest.warns(UserWarning, match=r"was not saved.*target=\.\.\."):
        back = load(tmp_path)
    assert back.target is None
    with pytest.raises(ValueError, match="has none"):
        back.log_density(POINTS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = load(tmp_path, target=target)
    expected = Gaussian.standard(2)
    np.testing.assert_allclose(
        given.log_density(POINTS),
        MongeMap(phi, target=expected).log_density(POINTS),
        rtol=1e-5,
    )


def test_no_target_and_samples_only(phi, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save(MongeMap(phi, dim=2), tmp_path / "a")  # no target: nothing to warn about
        assert load(tmp_path / "a").target is None
    # target samples are saved beside the map (tests/test_sample_targets.py)
    assert target_record(EmpiricalTarget(jnp.ones((3, 2))))["kind"] == "samples"
    assert target_record(PotentialTarget(lambda y: y @ y, 2)) is None


def test_bad_directories(phi, tmp_path):
    with pytest.raises(InputError, match="is not a saved map"):
        load(tmp_path)
    with pytest.raises(InputError, match="is not a saved map"):
        read_info(tmp_path / "missing")
    save(MongeMap(phi, dim=2), tmp_path / "m")
    meta_file, leaves = tmp_path / "m" / "map.json", tmp_path / "m" / "map.eqx"
    good_meta, good_leaves = meta_file.read_text(), leaves.read_bytes()
    meta_file.write_text("{not json")
    with pytest.raises(InputError, match="is not valid JSON"):
        load(tmp_path / "m")
    meta_file.write_text(json.dumps({**json.loads(good_meta), "format": "other/9"}))
    with pytest.raises(InputError, match="unknown format 'other/9'"):
        load(tmp_path / "m")
    meta_file.write_text(good_meta)
    leaves.write_bytes(good_leaves[: len(good_leaves) // 2])
    with pytest.raises(InputError, match="SHA-256 differs"):
        load(tmp_path / "m")
    legacy = json.loads(good_meta)  # a map saved before the hash was recorded
    del legacy["map_sha256"]
    meta_file.write_text(json.dumps(legacy))
    with pytest.raises(InputError, match="cannot read"):
        load(tmp_path / "m")


def test_a_beta_softplus_map_round_trips_and_an_older_record_reads_as_softplus(phi, tmp_path):
    """The activation is part of the saved structure; a map.json written before the setting
    existed (no "activation") is a softplus network and loads as one."""
    sharp = ICNN(2, jax.random.key(4), widths=(8, 8), activation="beta-softplus")
    sharp = jax.tree_util.tree_map(lambda a: a + 0.05 if eqx.is_inexact_array(a) else a, sharp)
    save(MongeMap(sharp, SHIFT, 1.7, Gaussian.standard(2)), tmp_path / "sharp")
    back = load(tmp_path / "sharp")
    assert back.potential.activation == "beta-softplus"
    np.testing.assert_array_equal(
        back.transport(POINTS), MongeMap(sharp, SHIFT, 1.7).transport(POINTS)
    )

    save(MongeMap(phi, SHIFT, 1.7, Gaussian.standard(2)), tmp_path / "old")
    meta_file = tmp_path / "old" / "map.json"
    meta = json.loads(meta_file.read_text())
    assert meta["potential"].pop("activation") == "softplus"
    meta_file.write_text(json.dumps(meta))
    old = load(tmp_path / "old")
    assert old.potential.activation == "softplus"
    np.testing.assert_array_equal(
        old.transport(POINTS), MongeMap(phi, SHIFT, 1.7).transport(POINTS)
    )
