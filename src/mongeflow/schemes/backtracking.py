"""Step control: backtracking on the divergence's loss, as a wrapper of any update scheme."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mongeflow.schemes.base import Scheme, UpdateScheme, apply_update, report
from mongeflow.settings import setting


class Backtracking(Scheme):
    """Takes the largest of δ, δ/2, …, δ/2^halvings that decreases the loss on the batch.

    The wrapped scheme proposes δ on a batch; each candidate θ + s·δ is scored on the same
    batch, and the first (largest) decreasing one is kept, the smallest when none is. It
    needs a divergence whose loss is its value; with a surrogate loss the full step is taken.
    """

    scheme: UpdateScheme = setting(help="the wrapped scheme", flatten=True)
    halvings: int = setting(
        3, help="backtracking halvings of the step (0: none)", static=True, low=0, high=30
    )

    @property
    def name(self) -> str:  # the wrapped scheme's name
        return self.scheme.name

    @property
    def default_steps(self) -> int:
        return self.scheme.default_steps

    def init(self, potential):
        return self.scheme.init(potential)

    def start(self, potential, task):
        return self.scheme.start(potential, task)

    def step(self, potential, state, batch, task, key):
        _, k_loss = jax.random.split(key)
        updates, state, loss = self.scheme.propose(potential, state, task, batch, k_loss)

        def candidate(s):
            return apply_update(potential, jax.tree_util.tree_map(lambda u: s * u, updates))

        if self.halvings == 0 or not task.divergence.loss_is_value:
            return candidate(1.0), state, report(task, loss, loss)
        scales = jnp.asarray([0.5**i for i in range(self.halvings + 1)])
        # one candidate after another (lax.map): their log-det LUs are batched LAPACK calls
        new = jax.lax.map(lambda s: task.loss(candidate(s), batch, k_loss), scales)
        decreases = jnp.isfinite(new) & (new < loss)
        chosen = jnp.where(jnp.any(decreases), jnp.argmax(decreases), len(scales) - 1)
        return candidate(scales[chosen]), state, report(task, loss, loss)
