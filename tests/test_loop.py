"""The training loop: batches as values drawn by the loop's sampler, monitors acting at
every history record, the configuration and its reasons reaching the result."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mongeflow as mf
from mongeflow import kernels
from mongeflow.auto import configure
from mongeflow.divergences.base import make_task
from mongeflow.loop import Monitor, Training
from mongeflow.problems.batch import Batch, Sampler


def _pair(n=400, d=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return mf.data_problem(x, target=mf.EmpiricalTarget(1.5 * x[::-1] + 2.0))


def test_the_sampler_draws_source_rows_and_target_rows_only_when_asked():
    problem = mf.get_problem("gaussian", dim=3)
    key = jax.random.key(0)
    plain = Sampler(problem, 16)(key)
    assert plain.y is None and plain.x.shape == (16, 3)
    # the source rows are the source's own draw with the key: a V-target fit draws exactly
    # the rows it drew before batches were values
    np.testing.assert_array_equal(plain.x, problem.source.sample(key, 16))
    both = Sampler(problem, 16, target=True)(key)
    np.testing.assert_array_equal(both.x, plain.x)
    assert both.y.shape == (16, 3) and not np.allclose(both.y, both.x)


def test_a_sample_divergence_uses_the_batchs_target_rows():
    """The divergences act on the two point clouds of the batch: with target rows given,
    nothing is drawn, and the loss is the energy distance of T(x) and y themselves."""
    problem = _pair()
    x = problem.source.sample(jax.random.key(1), 64)
    y = problem.target.sample(jax.random.key(2), 64)
    phi = mf.AffinePotential(2)  # the identity
    loss = mf.EnergyDistance().loss(phi, Batch(x, y), problem, None)
    np.testing.assert_allclose(loss, mf.energy_distance(x, y), rtol=1e-5)
    # bare rows: the divergence draws its target rows from the problem with the key
    assert np.isfinite(mf.EnergyDistance().loss(phi, x, problem, jax.random.key(3)))
    with pytest.raises(ValueError, match="needs a PRNG key"):
        mf.EnergyDistance().loss(phi, x, problem, None)


def test_the_kernels_module_matches_the_direct_sums():
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.standard_normal((37, 3)) + 50.0)  # far from the origin
    b = jnp.asarray(rng.standard_normal((23, 3)) + 50.0)
    direct = np.mean(np.linalg.norm(np.asarray(a)[:, None] - np.asarray(b)[None], axis=-1))
    for block in (1, 8, 37, 1024):
        np.testing.assert_allclose(kernels.mean_distance(a, b, block), direct, rtol=1e-5)
    rows, mask = kernels.row_blocks(a, 8)
    assert rows.shape == (5, 8, 3) and float(mask.sum()) == 37


@dataclasses.dataclass
class _Recorder(Monitor):
    """Records the steps it sees and stops seed 1 at its second record."""

    steps: list = dataclasses.field(default_factory=list)

    def record(self, training: Training, figures) -> None:
        self.steps.append(training.step)
        assert set(figures) >= {"energy_distance"}
        if len(self.steps) == 2:
            training.stop(np.array([False, True]))


@pytest.mark.slow  # 15 s cold on 2 cores; `pytest -m slow` runs it
def test_a_monitor_sees_every_record_and_can_stop_a_seed():
    recorder = _Recorder()
    res = mf.fit(
        _pair(),
        "adam",
        "energy",
        steps=40,
        log_every=10,
        seed=[0, 1],
        final_eval_size=0,
        keep_best=False,
        patience=None,
        monitors=[recorder],
    )
    assert recorder.steps == [10, 20, 30, 40]
    # seed 1 stopped at the second record, as converged (not a failure): its map stays
    # that of step 20
    assert np.isnan(res.history["loss"][-1][1]) and np.isfinite(res.history["loss"][-1][0])
    assert list(res.early_stop) == [-1, 20] and list(res.stopped_at) == [-1, -1]
    assert res.stop_reason == [None, None]


def test_the_configuration_says_why_and_the_reasons_reach_the_result():
    problem = mf.problems.standardize(_pair())
    config = configure(problem)
    assert config.divergence.name == "energy" and config.scheme.name == "semidual"
    assert any("known by samples" in r for r in config.reasons)
    assert any("semidual" in r for r in config.reasons)
    named = configure(problem, "explicit")
    assert named.divergence.name == "drift" and any("explicit" in r for r in named.reasons)
    given = configure(problem, mf.Adam(), "energy", steps=5)
    assert given.reasons == () and given.short and given.steps == 5
    res = mf.fit(
        _pair(), "adam", "energy", steps=3, final_eval_size=0, keep_best=False, patience=None
    )
    assert any("adam" in r for r in res.chosen)
    with pytest.raises(ValueError, match="batch_size 999 is larger than the"):
        configure(problem, batch_size=999)


def test_a_task_given_a_batch_size_builds_its_sampler():
    problem = _pair()
    task = mf.divergences.Task(problem, mf.Drift(), 32)
    assert task.batch_size == 32 and task.sampler.target
    assert make_task(problem, mf.EnergyDistance(), 8).sampler.target
    assert not make_task(mf.get_problem("gaussian", dim=2), mf.KL(), 8).sampler.target
