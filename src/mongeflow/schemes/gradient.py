"""Baselines of the paper: Euclidean gradient descent and Adam on θ."""

from __future__ import annotations

from typing import ClassVar

import optax

from mongeflow.schemes.base import DECAY_HELP, UpdateScheme, params_of
from mongeflow.settings import setting


class _OptaxScheme(UpdateScheme):
    def optimizer(self) -> optax.GradientTransformation:
        raise NotImplementedError

    def _rate(self):
        """The learning rate, constant or, with ``decay_steps > 0``, a cosine decay to 0."""
        if self.decay_steps > 0:
            return optax.cosine_decay_schedule(self.learning_rate, self.decay_steps)
        return self.learning_rate

    def init(self, potential):
        return self.optimizer().init(params_of(potential))

    def propose(self, potential, state, task, batch, key):
        loss, grads = task.loss_and_grad(potential, batch, key)
        updates, state = self.optimizer().update(grads, state, params_of(potential))
        return updates, state, loss


class Euclidean(_OptaxScheme):
    """Euclidean gradient descent θ ← θ − lr ∇_θ F (the paper's baseline), then projection.

    Note: the paper's example sums the gradient over its batch of 100; with the mean used
    here, its lr = 1e-3 corresponds to ``learning_rate = 0.1``.
    """

    learning_rate: float = setting(1e-3, help="gradient-descent step size", low=0.0, low_open=True)
    decay_steps: int = setting(0, help=DECAY_HELP, static=True, low=0)
    name: ClassVar[str] = "euclidean"
    default_steps: ClassVar[int] = 3000

    def optimizer(self):
        return optax.sgd(self._rate())


class Adam(_OptaxScheme):
    """Adam on θ (Kingma & Ba 2015) with the lift's gradient ∇_θ F, then projection.

    A cosine decay of the rate (``decay_steps`` = the number of steps) removes most of the
    mini-batch noise left at the end of a constant-rate run.
    """

    learning_rate: float = setting(
        0.05, help="Adam step size (the paper's baseline: 0.05)", low=0.0, low_open=True
    )
    decay_steps: int = setting(0, help=DECAY_HELP, static=True, low=0)
    name: ClassVar[str] = "adam"
    default_steps: ClassVar[int] = 1000

    def optimizer(self):
        return optax.adam(self._rate())
