"""Settings chosen from the problem: what ``fit`` and ``mongeflow fit`` use when the user
names no scheme, widths or steps.

The rules come from measurements on problems the defaults were not tuned on (the
``dense-potential`` family at d = 2–64, the logistic-regression posteriors, user data);
``benchmarks/maps`` has the figures. In short:

- **Adam with a cosine decay of its rate to 0** (``learning_rate`` 0.1) on the exact
  log-det loss. At an equal wall-time budget it beat the constrained schemes on the hard
  family (d = 16: 0.7 % L2-UVP in 2 000 steps against 3.4 % for the implicit scheme and
  8 % for the natural-gradient one, the linear map being at 7.5 %). The decay removes the
  mini-batch noise a constant rate leaves (d = 16: 7.4 % → 3.9 %, widths 20).
- **Widths that grow with d**: (64, 64) up to d = 32, then (2d, 2d); widths 20 were the
  main error left at d = 16 (2.3 % → 1.0 %).
- **Steps**: 2 000, the cap of an early-stopped fit.
- A divergence whose loss is only a gradient surrogate (a drift field) is followed with the
  explicit scheme instead, since it has no value to descend.
"""

from __future__ import annotations

import dataclasses

from mongeflow.divergences import DIVERGENCES, Divergence
from mongeflow.maps.default import auto_widths
from mongeflow.problems import Problem
from mongeflow.schemes import Adam, Explicit, Scheme

#: outer steps of an automatically configured fit (a cap: fits stop early on a plateau)
AUTO_STEPS = 2000


def choose_divergence(problem: Problem) -> Divergence:
    """The KL when the target has a potential V; else, for a target known by samples, the
    energy distance (an exact, unbiased loss with no bandwidth or ε to set)."""
    if problem.target.has_potential:
        return DIVERGENCES["kl"]
    return DIVERGENCES["energy"]


@dataclasses.dataclass(frozen=True)
class Choice:
    """What :func:`choose` picked, and why (``reasons``, one line each)."""

    scheme: Scheme
    widths: tuple[int, ...]
    steps: int
    reasons: tuple[str, ...]


def choose(problem: Problem, divergence: Divergence, steps: int | None = None) -> Choice:
    """The scheme, widths and number of steps for ``problem`` and ``divergence``.

    Example:
        >>> import mongeflow as mf
        >>> c = choose(mf.get_problem("gaussian", dim=3), mf.KL())
        >>> c.scheme.name, c.widths, c.scheme.decay_steps == c.steps
        ('adam', (64, 64), True)
    """
    d = problem.dim
    steps = int(steps or (AUTO_STEPS if divergence.loss_is_value else Explicit.default_steps))
    widths = auto_widths(d)
    reasons = [f"widths {widths} for d = {d}"]
    if divergence.loss_is_value:
        scheme: Scheme = Adam(learning_rate=0.1, decay_steps=steps)
        reasons.append(
            f"adam, rate 0.1 decaying to 0 over {steps} steps, on the {divergence.name} loss"
        )
    else:
        scheme = Explicit()
        reasons.append(
            f"explicit: the {divergence.name} divergence gives a velocity, not a loss value"
        )
    return Choice(scheme, widths, steps, tuple(reasons))
