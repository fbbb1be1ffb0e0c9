"""Baselines of the paper: Euclidean gradient descent and Adam on θ."""

from __future__ import annotations

from typing import ClassVar

import jax
import optax

from mongeflow.schemes.base import Scheme, Task, apply_optax, loss_and_grad, params_of


class _OptaxScheme(Scheme):
    def optimizer(self) -> optax.GradientTransformation:
        raise NotImplementedError

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
    default_steps: ClassVar[int] = 3000

    def optimizer(self):
        return optax.sgd(self.learning_rate)


class Adam(_OptaxScheme):
    """Adam on θ (Kingma & Ba 2015) with the lift's gradient ∇_θ F, then projection."""

    learning_rate: float = 0.05
    default_steps: ClassVar[int] = 1000

    def optimizer(self):
        return optax.adam(self.learning_rate)
