"""What the divergences between point clouds share: the lift T = ∇φ applied once, the
target rows of the batch, and their common settings."""

from __future__ import annotations

import abc
from typing import ClassVar

import jax

from mongeflow.divergences.base import Divergence
from mongeflow.maps.base import Array, Potential, transport
from mongeflow.problems.base import Problem
from mongeflow.problems.batch import Batch, as_batch
from mongeflow.settings import setting


def block_size_setting():
    """The ``block_size`` setting every sample-based divergence declares (one name, default
    and help text for the command line)."""
    return setting(
        1024,
        help="sample-based divergences: rows per block of the kernel sums (memory ∝ block × batch)",
        static=True,
        low=1,
    )


def check_block_size(block_size: int) -> None:
    if block_size < 1:
        raise ValueError(f"block_size must be ≥ 1, got {block_size}")


def target_batch(problem: Problem, key: Array | None, n: int, what: str) -> Array:
    """A batch of ``n`` target samples drawn with ``key``: for a call given bare source rows."""
    if key is None:
        raise ValueError(f"the {what} divergence draws target samples: it needs a PRNG key")
    k_target, _ = jax.random.split(key)
    return problem.target.sample(k_target, n)


class SampleDivergence(Divergence):
    """A divergence D(ρ | γ) between the pushed cloud z_i = T(x_i) and target rows y_j.

    Subclasses define it on point clouds only: :meth:`cloud_loss` (differentiable in ``z``),
    :meth:`field` (v = −∇_W D at the points of ``z``) and, when it differs from the loss,
    :meth:`cloud_value`. The lift to maps, z = ∇φ(x), is applied once here; the target rows
    are the batch's ``y`` (or, for bare source rows, as many drawn from the problem).
    """

    needs_target_samples: ClassVar[bool] = True

    @abc.abstractmethod
    def cloud_loss(self, z: Array, y: Array) -> Array:
        """A scalar whose gradient in ``z`` is (1/n) ∇_W D at the points of ``z``."""

    @abc.abstractmethod
    def field(self, z: Array, y: Array) -> Array:
        """v = −∇_W D at the points of ``z`` ``[n, d]``, against the target rows ``y``."""

    def cloud_value(self, z: Array, y: Array) -> Array:
        """An estimate of D itself on the two clouds (default: :meth:`cloud_loss`)."""
        return self.cloud_loss(z, y)

    def clouds(
        self, potential: Potential, batch: Batch | Array, problem: Problem, key
    ) -> tuple[Array, Array]:
        """The pushed rows T(x) and the target rows of ``batch``."""
        batch = as_batch(batch)
        y = batch.y
        if y is None:
            y = target_batch(problem, key, batch.x.shape[0], self.name)
        return transport(potential, batch.x), y

    def loss(self, potential, batch, problem, key=None):
        return self.cloud_loss(*self.clouds(potential, batch, problem, key))

    def value(self, potential, batch, problem, key=None):
        return self.cloud_value(*self.clouds(potential, batch, problem, key))

    def velocity(self, potential, batch, problem, key=None):
        z, y = self.clouds(potential, batch, problem, key)
        return self.field(jax.lax.stop_gradient(z), y)
