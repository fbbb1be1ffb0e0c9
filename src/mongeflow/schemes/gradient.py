"""Baselines of the paper: Euclidean gradient descent and Adam on θ."""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import optax

from mongeflow.schemes.base import Scheme, Task, apply_optax, loss_and_grad, params_of


class _OptaxScheme(Scheme):
    def optimizer(self) -> optax.GradientTransformation:
        raise NotImplementedError

    def _rate(self):
        """The learning rate, constant or, with ``decay_steps > 0``, a cosine decay to 0."""
        if self.decay_steps > 0:
            return optax.cosine_decay_schedule(self.learning_rate, self.decay_steps)
        return self.learning_rate

    def init(self, potential):
        return self.optimizer().init(params_of(potential))

    def step(self, potential, state, task: Task, key):
        k_batch, k_loss = jax.random.split(key)
        x = task.sample(k_batch)
        loss, grads = loss_and_grad(task, potential, x, k_loss)
        potential, state = apply_optax(self.optimizer(), potential, grads, state)
        return potential, state, loss


class Euclidean(_OptaxScheme):
    """Euclidean gradient descent θ ← θ − lr ∇_θ F (the paper's baseline), then projection.

    Note: the paper's example sums the gradient over its batch of 100; with the mean used
    here, its lr = 1e-3 corresponds to ``learning_rate = 0.1``.
    """

    learning_rate: float = 1e-3
    decay_steps: int = eqx.field(static=True, default=0)
    default_steps: ClassVar[int] = 3000

    def optimizer(self):
        return optax.sgd(self._rate())


class Adam(_OptaxScheme):
    """Adam on θ (Kingma & Ba 2015) with the lift's gradient ∇_θ F, then projection.

    Args:
        learning_rate: Adam's step size (the paper's baseline: 0.05).
        decay_steps: 0 for a constant rate, else a cosine decay to 0 over this many steps
            (set it to the number of steps): it removes most of the mini-batch noise left
            at the end of a constant-rate run.
    """

    learning_rate: float = 0.05
    decay_steps: int = eqx.field(static=True, default=0)
    default_steps: ClassVar[int] = 1000

    def optimizer(self):
        return optax.adam(self._rate())
