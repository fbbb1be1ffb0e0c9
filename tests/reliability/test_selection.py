"""Keeping the best map: a map that runs off is never kept, and its seed stops, said why."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import mongeflow as mf


def _convex_near_concave_far(z):
    """V(z) = |z|²/2 for |z| < 5, then 12.5 + 5t − t² (t = |z| − 5): joined with its slope,
    concave beyond 5 and unbounded below, so exp(−V) is not integrable."""
    r = jnp.sqrt(jnp.sum(z**2) + 1e-12)
    t = r - 5.0
    return jnp.where(r < 5.0, 0.5 * r**2, 12.5 + 5.0 * t - t**2)


class _LastState(mf.Callback):
    def on_end(self, run, state, interrupted):
        self.state = state


@pytest.mark.slow  # 14 s cold on 2 cores; `pytest -m slow` runs it
def test_a_map_that_runs_off_is_not_kept_and_its_seed_stops_diverging():
    # heavy-tailed data: its far rows start beyond the top of V (|z| = 7.5), where the
    # objective falls without end; the held-out F of such maps goes to -1e7 and below
    x = np.random.default_rng(0).standard_t(2.0, (1000, 2))
    problem = mf.data_problem(x, target=mf.PotentialTarget(_convex_near_concave_far, 2))
    last = _LastState()
    with pytest.warns(mf.FitWarning, match="potential V is the likely cause"):
        res = mf.fit(
            problem,
            mf.Adam(learning_rate=0.1),
            steps=300,
            seed=[0, 1],  # side by side (vmapped)
            final_eval_size=500,
            fallback=False,  # the trained map is kept, not the linear map
            callbacks=[last],
        )
    assert res.stop_reason == ["diverging", "diverging"]
    assert last.state.stop_reason == res.stop_reason  # what a checkpoint sees
    assert np.all(res.stopped_at >= 0) and res.last_step < 300  # every seed stopped early
    assert np.all(res.best_step < res.stopped_at)  # the map that ran off is not kept
    assert not res.linear_kept.any()
    for i in range(2):
        mapped = np.asarray(res.transport(x, i))
        assert np.all(np.isfinite(mapped))
        # the maps that ran off reached |T(x)| of thousands; the kept one stays near the data
        assert np.linalg.norm(mapped, axis=1).max() < 100.0
    objective = res.metrics["objective"]
    assert np.all(np.isfinite(objective)) and np.all(objective > -10.0), objective


@pytest.mark.slow  # 9 s cold on 2 cores; `pytest -m slow` runs it
def test_a_normal_problem_has_no_stop_reason():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mf.FitWarning)  # a short fit
        res = mf.fit(
            "gaussian", mf.Adam(learning_rate=0.01), dim=2, steps=60, seed=[0, 1],
            final_eval_size=500,
        )  # fmt: skip
    assert res.stop_reason == [None, None]
    assert np.all(res.stopped_at == -1) and res.last_step == 60


def test_a_step_size_that_blows_the_map_up_is_told_apart():
    # plain gradient descent with a huge rate: a non-finite loss or a map that ran off
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mf.FitWarning)
        res = mf.fit(
            "gaussian", mf.Euclidean(learning_rate=1e6), dim=2, steps=20, final_eval_size=0
        )
    assert res.stopped_at[0] >= 0
    assert res.stop_reason[0] in ("non-finite", "diverging")


@pytest.mark.slow  # 10 s cold on 2 cores; `pytest -m slow` runs it
def test_with_the_fallback_the_linear_map_replaces_a_map_chosen_by_a_runaway_objective():
    x = np.random.default_rng(0).standard_t(2.0, (1000, 2))
    problem = mf.data_problem(x, target=mf.PotentialTarget(_convex_near_concave_far, 2))
    with pytest.warns(mf.FitWarning, match="the linear \\(Bures\\) map is kept instead"):
        res = mf.fit(problem, mf.Adam(learning_rate=0.1), steps=300, final_eval_size=0)
    assert res.stop_reason == ["diverging"] and res.linear_kept.tolist() == [True]
    mapped = np.asarray(res.transport(x))
    np.testing.assert_allclose(mapped, np.asarray(res.map().transport(x)))
    assert np.all(np.isfinite(mapped)) and np.linalg.norm(mapped, axis=1).max() < 100.0
