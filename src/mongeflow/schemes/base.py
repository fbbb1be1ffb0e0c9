"""What every scheme shares: the step contract, the one projection, the Gram-matrix solve."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from mongeflow.divergences.base import Task
from mongeflow.maps.base import Array, IdentityOr, Potential, transport
from mongeflow.maps.default import auto_widths
from mongeflow.platform import after
from mongeflow.problems.batch import Batch
from mongeflow.settings import Settings

#: the help of the ``decay_steps`` setting, shared by the schemes that have it (one CLI flag)
DECAY_HELP = (
    "cosine decay to 0 over this many steps of the rate (adam, euclidean, semidual) or of τ "
    "(explicit); "
    "0: constant"
)


class StepInfo(NamedTuple):
    """What every step reports, whatever the scheme.

    Attributes:
        loss: the divergence's loss on the step's batch at the map the step started from
            (an estimate of F, up to a constant, when the divergence's loss is its value;
            NaN when the loss is only a gradient surrogate).
        objective: what the scheme itself minimised in this step: the loss (gradient
            schemes), the regression residual (explicit) or the proximal objective
            (implicit), at the end of the step's inner solve.
    """

    loss: Array
    objective: Array


class Scheme(Settings):
    """How θ moves: a small immutable value with two pure methods,

    ``init(potential) -> state`` and
    ``step(potential, state, batch, task, key) -> (potential, state, StepInfo)``,

    the step's data coming in as a value (``batch``, a
    :class:`~mongeflow.problems.batch.Batch` the loop drew with the key's first half,
    ``split(key)[0]``; a step that solves an inner problem draws its fresh batches with
    ``task.sample``), so that a driver can ``jit``, ``lax.scan``, ``vmap`` and shard them
    (as optax's ``GradientTransformation`` and diffrax's solvers). One call of ``step`` is one outer
    step (for the explicit and implicit schemes, one time step τ of the flow).
    """

    default_steps: ClassVar[int] = 1000
    #: every batch must hold target rows (``Batch.y``), whatever the divergence
    needs_target_samples: ClassVar[bool] = False
    #: the activation of the default potential's network (:class:`~mongeflow.maps.ICNN`)
    #: when the fit builds it for this scheme
    default_activation: ClassVar[str] = "softplus"

    @classmethod
    def default_widths(cls, dim: int) -> tuple[int, ...]:
        """The hidden widths of the default potential's network at dimension ``dim`` when the
        fit builds it for this scheme: :func:`~mongeflow.maps.default.auto_widths`."""
        return auto_widths(dim)

    def default_nonnegativity(self, dim: int) -> str:
        """How the default potential's network keeps its weights non-negative at dimension
        ``dim`` when the fit builds it for this scheme (:class:`~mongeflow.maps.ICNN`'s
        ``nonnegativity``): ``"clamp"``, projected after each update."""
        return "clamp"

    @property
    def settles(self) -> bool:
        """Whether the fit keeps the scheme's last map unless its held-out figure is clearly
        worse than the lowest (:func:`~mongeflow.fit.fit`'s ``keep_best``): a scheme says so
        when its moves shrink to nothing by the end of its schedule and its held-out
        two-sample figures, blind to optimality, would rank its last maps by their noise
        (the semi-dual game with a decaying rate). An opt-in: False unless the scheme
        says otherwise (a descent such as Adam, whose held-out figure does fall with the
        map's error, keeps the usual choice)."""
        return False

    def init(self, potential: Potential) -> Any:
        return jnp.zeros((), jnp.int32)

    def start(self, potential: Potential, task: Task) -> Any:
        """The state a fit on ``task`` starts from: :meth:`init`'s; a scheme whose state is
        shaped by the problem (its rows: ``task.target_rows``) adds to it here."""
        return self.init(potential)

    @abc.abstractmethod
    def step(self, potential: Potential, state: Any, batch: Batch, task: Task, key: Array):
        """One outer step."""


class UpdateScheme(Scheme):
    """A scheme that proposes one parameter update from one batch (gradient and natural
    schemes); :class:`~mongeflow.schemes.Backtracking` can wrap it."""

    @abc.abstractmethod
    def propose(self, potential: Potential, state: Any, task: Task, batch: Batch, key: Array):
        """``(updates, state, loss)``: the update δθ (a pytree like the parameters), the
        new state and the divergence's loss at ``potential`` on ``batch``."""

    def step(self, potential, state, batch: Batch, task: Task, key):
        _, k_loss = jax.random.split(key)
        updates, state, loss = self.propose(potential, state, task, batch, k_loss)
        return apply_update(potential, updates), state, report(task, loss, loss)


def report(task: Task, loss: Array, objective: Array) -> StepInfo:
    """A :class:`StepInfo`, with the loss hidden (NaN) when it is only a surrogate."""
    shown = loss if task.divergence.loss_is_value else jnp.full_like(loss, jnp.nan)
    return StepInfo(shown, objective)


def start_loss(task: Task, potential: Potential, key: Array) -> Array:
    """The divergence's loss at a step's starting map, on a batch of its own: what schemes
    with an inner solve report as ``StepInfo.loss`` (NaN when the loss is only a surrogate)."""
    if not task.divergence.loss_is_value:
        return jnp.asarray(jnp.nan)
    k_batch, k_loss = jax.random.split(jax.random.fold_in(key, 0x5EED))
    return task.loss(potential, task.sample(k_batch), k_loss)


def params_of(potential: Potential):
    return eqx.filter(potential, eqx.is_inexact_array)


def feasible(potential: Potential) -> Potential:
    """The potential projected onto its feasible set (clamped ICNN weights ≥ 0).

    The one place where a scheme's parameters are made feasible again: every update goes
    through :func:`apply_update`, and an inner solver that cannot project between its
    iterations minimises the objective at ``feasible(θ)`` instead.
    """
    return potential.project()


def apply_update(potential: Potential, updates) -> Potential:
    """θ + δθ, projected (:func:`feasible`)."""
    return feasible(eqx.apply_updates(potential, updates))


def frozen(potential: Potential) -> Potential:
    """The same potential with gradients stopped (a frozen T_k)."""
    return jax.tree_util.tree_map(
        lambda a: jax.lax.stop_gradient(a) if eqx.is_inexact_array(a) else a, potential
    )


def previous_map(potential: Potential, step: Array, identity_start: bool) -> Potential:
    """The frozen T_k of an outer step: T_0 = id when ``identity_start`` and ``step == 0``."""
    return IdentityOr(frozen(potential), jnp.logical_and(identity_start, step == 0))


class Objective(NamedTuple):
    """What an inner solver minimises over θ.

    Attributes:
        value: ``(potential, batch, key) -> scalar`` on a
            :class:`~mongeflow.problems.batch.Batch`.
        draw: ``key -> batch``, a fresh batch (the loop's sampler).
        residual: for least-squares objectives, ``(potential, batch, key) -> [n, d]`` with
            ``value = mean_i |residual_i|²``; else ``None``.
        exact: whether ``value`` is the objective itself (not only a gradient surrogate).
    """

    value: Callable[[Potential, Batch, Array], Array]
    draw: Callable[[Array], Batch]
    residual: Callable[[Potential, Batch, Array], Array] | None = None
    exact: bool = True


GramSolver = Literal["auto", "dense", "cg"]


def gram_solve(
    potential: Potential,
    x: Array,
    rhs,
    damping: float,
    solver: GramSolver = "auto",
    cg_maxiter: int = 100,
):
    """Solve (G + λ I) δ = rhs, G = (1/n) Σ_i J_iᵀ J_i, J_i = ∂_θ T_θ(x_i) ([d, p]).

    G is the Gram matrix of the L²(μ0) metric pulled back to the parameters (Dumont,
    Lacombe & Vialard 2026, natural gradient). ``rhs`` and the returned δ are pytrees
    shaped like the potential's parameters.

    ``dense``: forms J ([n·d, p]) and solves exactly, in the smaller of the two spaces
    (Cholesky of G + λI when p ≤ n·d, else the Woodbury identity with J Jᵀ + nλ I).
    ``cg``: matrix-free conjugate gradient, G v by one JVP and one VJP.
    ``auto``: dense when min(p, n·d) ≤ 2048.
    """
    params, static = eqx.partition(potential, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    rhs_flat, _ = ravel_pytree(rhs)
    n = x.shape[0]
    m = x.size
    p = flat.size

    def outputs(theta):
        return transport(eqx.combine(unravel(theta), static), x).reshape(-1)

    if solver == "auto":
        solver = "dense" if min(p, m) <= 2048 else "cg"
    if solver == "dense":
        J = jax.jacrev(outputs)(flat) if m <= p else jax.jacfwd(outputs)(flat)
        J = after(J, rhs_flat)
        if p <= m:
            G = J.T @ J / n + damping * jnp.eye(p, dtype=flat.dtype)
            delta = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(G), rhs_flat)
        else:
            K = J @ J.T + n * damping * jnp.eye(m, dtype=flat.dtype)
            w = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(K), J @ rhs_flat)
            delta = (rhs_flat - J.T @ w) / damping
    elif solver == "cg":
        _, jvp = jax.linearize(outputs, flat)
        vjp = jax.linear_transpose(jvp, flat)

        def matvec(v):
            return vjp(jvp(v))[0] / n + damping * v

        delta, _ = jax.scipy.sparse.linalg.cg(matvec, rhs_flat, maxiter=cg_maxiter)
    else:
        raise ValueError(f"solver must be 'auto', 'dense' or 'cg', got {solver!r}")
    return unravel(delta)
