"""The contract every divergence meets, and the task a scheme steps on."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx

from mongeflow.maps.base import Array, Potential
from mongeflow.problems.base import Problem
from mongeflow.settings import Settings


class Divergence(Settings):
    """A divergence D(T#μ0 | γ) lifted to maps T = ∇φ (Dumont, Lacombe & Vialard 2026).

    A divergence is a small immutable value (its settings); the source and target come
    with every call through the :class:`~mongeflow.problems.Problem`, never as a copy.
    Every method acts on a batch ``x: [n, d]`` of source samples.

    Subclasses implement :meth:`loss` and :meth:`velocity`, and may implement :meth:`value`.

    Attributes:
        needs_potential: the target's potential V is required (KL).
        needs_target_samples: samples of the target are required (MMD, Sinkhorn, drift).
    """

    needs_potential: ClassVar[bool] = False
    needs_target_samples: ClassVar[bool] = False

    @property
    def loss_is_value(self) -> bool:
        """Whether :meth:`loss` is an estimate of F itself, not only a gradient surrogate.

        Line searches, backtracking and L-BFGS need it.
        """
        return True

    @abc.abstractmethod
    def loss(self, potential: Potential, x: Array, problem: Problem, key: Array) -> Array:
        """A scalar whose gradient in the parameters of ``potential`` estimates ∇_θ F."""

    @abc.abstractmethod
    def velocity(self, potential: Potential, x: Array, problem: Problem, key: Array) -> Array:
        """v(T(x)) = −∇_W D(T#μ0)(T(x)), ``[n, d]``: the field the explicit scheme follows."""

    def value(self, potential: Potential, x: Array, problem: Problem, key: Array) -> Array:
        """A Monte-Carlo estimate of D(T#μ0 | γ) itself, where it can be computed."""
        raise ValueError(f"the {self.name} divergence has no value estimate")

    def check(self, problem: Problem) -> None:
        """Raise a clear ValueError if ``problem`` lacks what this divergence needs."""
        if self.needs_potential and not problem.target.has_potential:
            raise ValueError(
                f"the {self.name} divergence needs the target's potential V, but the target "
                f"{type(problem.target).__name__} is known by samples only"
            )
        if self.needs_target_samples and not problem.target.can_sample:
            raise ValueError(
                f"the {self.name} divergence needs samples of the target, which "
                f"{type(problem.target).__name__} cannot give"
            )


class Task(eqx.Module):
    """What a scheme steps on: the problem, the lifted divergence and the batch size.

    Schemes draw batches with :meth:`sample` and evaluate the divergence through
    :meth:`loss` and :meth:`velocity`, which hand the problem to the divergence.
    """

    problem: Problem
    divergence: Divergence
    batch_size: int = eqx.field(static=True)

    def sample(self, key: Array) -> Array:
        """A fresh mini-batch ``[n, d]`` of the source."""
        return self.problem.source.sample(key, self.batch_size)

    def loss(self, potential: Potential, x: Array, key: Array) -> Array:
        return self.divergence.loss(potential, x, self.problem, key)

    def velocity(self, potential: Potential, x: Array, key: Array) -> Array:
        return self.divergence.velocity(potential, x, self.problem, key)

    def loss_and_grad(self, potential: Potential, x: Array, key: Array):
        """(loss, ∇_θ loss) on the batch ``x``."""
        return eqx.filter_value_and_grad(lambda p: self.loss(p, x, key))(potential)
