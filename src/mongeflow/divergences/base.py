"""The contract every divergence meets, and the task a scheme steps on."""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx

from mongeflow.maps.base import Array, Potential
from mongeflow.problems.base import Problem
from mongeflow.problems.batch import Batch, Sampler
from mongeflow.settings import Settings


class Divergence(Settings):
    """A divergence D(T#μ0 | γ) lifted to maps T = ∇φ (Dumont, Lacombe & Vialard 2026).

    A divergence is a small immutable value (its settings); the data come with every call
    as a :class:`~mongeflow.problems.batch.Batch` (source rows ``x`` and, for divergences
    that compare point clouds, target rows ``y``), and what is known in closed form (the
    target's V, the source's log-density) through the :class:`~mongeflow.problems.Problem`.
    Bare source rows ``[n, d]`` are accepted for a batch; a divergence that needs target
    rows then draws them from the problem with the call's key.

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
    def loss(
        self, potential: Potential, batch: Batch | Array, problem: Problem, key: Array
    ) -> Array:
        """A scalar whose gradient in the parameters of ``potential`` estimates ∇_θ F."""

    @abc.abstractmethod
    def velocity(
        self, potential: Potential, batch: Batch | Array, problem: Problem, key: Array
    ) -> Array:
        """v(T(x)) = −∇_W D(T#μ0)(T(x)) at the batch's rows, ``[n, d]``: the field the
        explicit scheme follows."""

    def value(
        self, potential: Potential, batch: Batch | Array, problem: Problem, key: Array
    ) -> Array:
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
    """What a scheme steps on: the problem, the lifted divergence and the sampler of batches.

    A scheme's step receives its batch as an argument; schemes whose step solves an inner
    problem on fresh batches draw them with :meth:`sample` (the loop's sampler), and every
    evaluation of the divergence goes through :meth:`loss` and :meth:`velocity`, which hand
    it the problem.
    """

    divergence: Divergence
    sampler: Sampler

    def __init__(self, problem: Problem, divergence: Divergence, sampler: Sampler | int):
        """``sampler``: the loop's :class:`~mongeflow.problems.batch.Sampler` (of
        ``problem``), or a batch size for one that draws target rows when ``divergence``
        compares point clouds."""
        if not isinstance(sampler, Sampler):
            sampler = Sampler(problem, int(sampler), divergence.needs_target_samples)
        elif sampler.problem is not problem:
            raise ValueError("the sampler must draw from the task's problem")
        self.divergence, self.sampler = divergence, sampler

    @property
    def problem(self) -> Problem:
        """The problem (held once, by the sampler)."""
        return self.sampler.problem

    @property
    def batch_size(self) -> int:
        return self.sampler.batch_size

    def sample(self, key: Array) -> Batch:
        """A fresh mini-batch (the loop's sampler)."""
        return self.sampler(key)

    @property
    def target_rows(self) -> Array | None:
        """The target's rows ``[N, d]`` when it is a finite set of them, which the sampler
        draws its batches from, else ``None``: for a scheme that keeps something per target
        row across its steps."""
        return self.problem.target.rows

    def loss(self, potential: Potential, batch: Batch, key: Array) -> Array:
        return self.divergence.loss(potential, batch, self.problem, key)

    def velocity(self, potential: Potential, batch: Batch, key: Array) -> Array:
        return self.divergence.velocity(potential, batch, self.problem, key)

    def loss_and_grad(self, potential: Potential, batch: Batch, key: Array):
        """(loss, ∇_θ loss) on ``batch``."""
        return eqx.filter_value_and_grad(lambda p: self.loss(p, batch, key))(potential)


def make_task(
    problem: Problem,
    divergence: Divergence,
    batch_size: int,
    sharding=None,
    target_rows: bool = False,
) -> Task:
    """The task of ``divergence`` on ``problem``, with a sampler of ``batch_size`` rows that
    draws target rows when the divergence compares point clouds, or with ``target_rows``
    (a scheme that needs them)."""
    target = divergence.needs_target_samples or target_rows
    return Task(problem, divergence, Sampler(problem, batch_size, target, sharding))
