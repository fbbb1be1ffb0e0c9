"""A new scheme or divergence is one class plus one registry line: fit, the command line
and its run records pick it up with no other edit."""

import json
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mongeflow as mf
from mongeflow import cli, runs
from mongeflow.divergences import DIVERGENCES, KL, Divergence
from mongeflow.schemes import SCHEMES, UpdateScheme
from mongeflow.settings import setting


class SignDescent(UpdateScheme):
    """θ ← θ − step · sign(∇_θ F) (test-only)."""

    sign_step: float = setting(0.01, help="signed step size")
    name: ClassVar[str] = "sign-descent"
    default_steps: ClassVar[int] = 30

    def propose(self, potential, state, task, x, key):
        loss, grads = task.loss_and_grad(potential, x, key)
        updates = jax.tree_util.tree_map(lambda g: -self.sign_step * jnp.sign(g), grads)
        return mf.schemes.base.params_of(updates), state, loss


class WeightedKL(Divergence):
    """weight · KL (test-only)."""

    weight: float = setting(1.0, help="factor in front of the KL")
    name: ClassVar[str] = "weighted-kl"
    needs_potential: ClassVar[bool] = True

    def loss(self, potential, x, problem, key):
        return self.weight * KL().loss(potential, x, problem, key)

    def velocity(self, potential, x, problem, key):
        return self.weight * KL().velocity(potential, x, problem, key)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(SCHEMES, "sign-descent", SignDescent())
    monkeypatch.setitem(DIVERGENCES, "weighted-kl", WeightedKL())


@pytest.mark.slow  # 14 s cold on 2 cores; `pytest -m slow` runs it
def test_a_registered_scheme_and_divergence_run_through_fit(registered):
    res = mf.fit(
        "gaussian",
        "sign-descent",
        "weighted-kl",
        dim=2,
        steps=60,
        final_eval_size=2000,
        standardize=False,  # the problem as posed: its loss starts far from its optimum
        patience=None,
    )
    assert res.scheme == SignDescent() and res.divergence == WeightedKL()
    loss = res.history["loss"][:, 0]
    assert loss[-1] < loss[0] - 0.1, loss
    # an explicit scheme driven by the new divergence's velocity works too
    explicit = mf.Explicit(inner=mf.AdamInner(steps=5))
    res = mf.fit("gaussian", explicit, WeightedKL(weight=0.5), dim=2, steps=2, final_eval_size=0)
    assert np.isfinite(res.history["objective"]).all()


def test_a_registered_scheme_and_divergence_get_their_flags(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("MONGEFLOW_NO_CACHE", "1")  # in-process: leave JAX's cache alone
    parser = cli._parser()
    out = tmp_path / "run"
    argv = [
        "fit", "--scheme", "sign-descent", "--sign-step", "0.02", "--divergence", "weighted-kl",
        "--weight", "0.5", "--steps", "5", "--eval-size", "0", "--quiet", "--out", str(out),
    ]  # fmt: skip
    args = parser.parse_args(argv)
    settings = runs.fit_settings(vars(args), out, resume=False, overwrite=False)
    _, scheme, divergence, _ = runs.build(settings)
    assert scheme == SignDescent(sign_step=0.02) and divergence == WeightedKL(weight=0.5)
    help_text = parser._subparsers._group_actions[0].choices["fit"].format_help()
    assert "--sign-step" in help_text and "signed step size (default 0.01 (sign-descent))" in (
        " ".join(help_text.split())
    )
    assert cli.main(argv) == 0
    stored = json.loads((out / "run.json").read_text())["settings"]
    assert stored["sign_step"] == 0.02 and stored["weight"] == 0.5
    # the stored settings rebuild the run: resuming with a changed one is refused
    assert cli.main(["fit", "--resume", "--out", str(out), "--steps", "8", "--quiet"]) == 0
    assert cli.main(["fit", "--resume", "--out", str(out), "--weight", "2.0", "--quiet"]) == 2


def test_a_field_keeps_its_plain_name_and_declares_its_flag(tmp_path, monkeypatch):
    """``Sinkhorn.threshold`` is ``threshold`` in Python and ``--sinkhorn-threshold`` on the
    command line (``sinkhorn_threshold`` in run.json): its declaration names the flag."""
    from mongeflow.settings import configure, flat, options, record

    div = mf.Sinkhorn(threshold=1e-4, iterations=50)
    assert (div.threshold, div.iterations) == (1e-4, 50)
    keys = {"sinkhorn_threshold": 1e-4, "sinkhorn_iterations": 50}
    assert keys.items() <= flat(div).items()
    assert "threshold" not in flat(div) and "iterations" not in flat(div)
    assert record(div)["settings"]["sinkhorn_threshold"] == 1e-4
    assert configure(mf.Sinkhorn(), keys) == div
    assert options(DIVERGENCES)["sinkhorn_threshold"].flag == "sinkhorn-threshold"
    # the flags set the fields
    monkeypatch.setenv("MONGEFLOW_NO_CACHE", "1")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(100, 2)))
    np.save(tmp_path / "y.npy", 1.0 + rng.normal(size=(100, 2)))
    out = tmp_path / "run"
    argv = [
        "fit", "--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}",
        "--divergence", "sinkhorn", "--sinkhorn-threshold", "1e-4", "--sinkhorn-iterations",
        "50", "--out", str(out),
    ]  # fmt: skip
    settings = runs.fit_settings(vars(cli._parser().parse_args(argv)), out, resume=False,
                                 overwrite=False)  # fmt: skip
    _, _, divergence, _ = runs.build(settings)
    assert divergence == div
    assert settings["sinkhorn_threshold"] == 1e-4 and settings["sinkhorn_iterations"] == 50
    help_text = cli._parser()._subparsers._group_actions[0].choices["fit"].format_help()
    assert "--sinkhorn-threshold" in help_text and "--threshold" not in help_text
