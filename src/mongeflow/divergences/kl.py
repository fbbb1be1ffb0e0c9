"""The KL divergence to a log-concave target, lifted to maps T = ∇φ."""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from mongeflow.divergences.base import Divergence
from mongeflow.divergences.score import entropic_score, pushforward_score
from mongeflow.maps.base import Array, Potential, log_det_hessian, transport
from mongeflow.problems.base import Problem
from mongeflow.problems.batch import as_batch
from mongeflow.settings import setting


class KL(Divergence):
    """F(T) = KL(T#μ0 | γ) for γ ∝ exp(−V), its gradients and its velocity.

    By change of variables (T = ∇φ, DT = ∇²φ),

        KL(T#μ0 | γ) = E_μ0[V(T(x))] − E_μ0[log det ∇²φ(x)] + E_μ0[log ρ0(x)] + log Z,

    and the first two terms, F(θ) = mean_i V(T_θ(x_i)) − mean_i log det ∇²φ_θ(x_i), form the
    training loss: its autodiff gradient equals E[J_θᵀ (∇V + ∇log ρ_T)∘T_θ] with no score
    estimate at all. The Wasserstein gradient is ∇V + ∇log ρ_T, so the velocity is
    v = −∇V − ∇log ρ_T (Dumont, Lacombe & Vialard 2026, §2).

    Args:
        gradient: how ∇_θ F is obtained:
            ``"logdet"``: autodiff of the log-det loss above (exact Hessian);
            ``"entropic"``: E[Jᵀ(∇V + ŝ)∘T] with ŝ the self-entropic-OT score of the pushed
            batch (the estimator of Dumont, Lacombe & Vialard 2026);
            ``"exact"``: the same with the exact pushed-forward score (needs the source score).
        velocity_estimator: the score in v: ``"auto"`` (exact when the source has a known
            log-density, else entropic), ``"entropic"`` or ``"exact"``.
        epsilon_scale: median-heuristic factor of the entropic score (paper: 0.05).

    Example:
        >>> import jax, mongeflow as mf
        >>> problem = mf.get_problem("gaussian", dim=2)
        >>> phi = mf.ICNN(2, jax.random.key(0))
        >>> x = problem.source.sample(jax.random.key(1), 64)
        >>> KL().loss(phi, x, problem, None).shape
        ()
    """

    gradient: str = setting(
        "logdet",
        help="how the KL gradient is computed: exact log-det loss, or a score estimate",
        static=True,
        choices=("logdet", "entropic", "exact"),
    )
    velocity_estimator: str = setting(
        "auto",
        help="score used in the KL velocity (explicit scheme): exact when the source "
        "density is known (auto), or the self-entropic-OT estimate",
        static=True,
        choices=("auto", "entropic", "exact"),
    )
    epsilon_scale: float = setting(
        0.05,
        help="entropic score: ε = this × median squared distance",
        static=True,
        low=0.0,
        low_open=True,
    )
    name: ClassVar[str] = "kl"
    needs_potential: ClassVar[bool] = True

    def __check_init__(self):
        if self.gradient not in ("logdet", "entropic", "exact"):
            raise ValueError(
                f"gradient must be 'logdet', 'entropic' or 'exact', got {self.gradient!r}"
            )
        if self.velocity_estimator not in ("auto", "entropic", "exact"):
            raise ValueError(
                "velocity_estimator must be 'auto', 'entropic' or 'exact', got "
                f"{self.velocity_estimator!r}"
            )

    @property
    def loss_is_value(self) -> bool:
        return self.gradient == "logdet"

    def check(self, problem: Problem) -> None:
        super().check(problem)
        if "exact" in (self.gradient, self.velocity_estimator) and not (
            problem.source.has_log_prob
        ):
            raise ValueError("the 'exact' score needs a source with a known log-density")

    def objective(self, potential: Potential, x: Array, problem: Problem) -> Array:
        """F(θ) = mean V(T(x)) − mean log det ∇²φ(x) on the batch ``x: [n, d]``."""
        y = transport(potential, x)
        v = jax.vmap(problem.target.potential)(y)
        logdet = jax.vmap(lambda xi: log_det_hessian(potential, xi))(x)
        return jnp.mean(v) - jnp.mean(logdet)

    def score(self, potential: Potential, x: Array, y: Array, problem: Problem, how: str):
        """∇ log ρ_T at ``y = T(x)``, exact or estimated."""
        if how == "auto":
            how = "exact" if problem.source.has_log_prob else "entropic"
        if how == "exact":
            return pushforward_score(potential, x, problem.source.score)
        return entropic_score(y, epsilon_scale=self.epsilon_scale)

    def velocity(self, potential, batch, problem, key=None):
        x = as_batch(batch).x
        y = transport(potential, x)
        grad_v = jax.vmap(jax.grad(problem.target.potential))(y)
        return -grad_v - self.score(potential, x, y, problem, self.velocity_estimator)

    def loss(self, potential, batch, problem, key=None):
        """F itself for ``gradient="logdet"``; for score gradients the surrogate
        mean_i ⟨sg(∇V(y_i) + ŝ(y_i)), y_i⟩ with y = T_θ(x), whose gradient is ∇_θ F."""
        x = as_batch(batch).x
        if self.gradient == "logdet":
            return self.objective(potential, x, problem)
        y = transport(potential, x)
        grad_v = jax.vmap(jax.grad(problem.target.potential))(y)
        score = self.score(potential, x, y, problem, self.gradient)
        direction = jax.lax.stop_gradient(grad_v + score)
        return jnp.mean(jnp.sum(direction * y, axis=-1))

    def value(self, potential, batch, problem, key=None):
        """Monte-Carlo estimate of KL(T#μ0 | γ); needs log ρ0 and log Z."""
        x = as_batch(batch).x
        if not problem.source.has_log_prob:
            raise ValueError("the KL value needs a source with a known log-density")
        log_z = problem.target.log_normaliser
        if log_z is None:
            raise ValueError("the KL value needs the target's normalising constant")
        log_rho0 = jax.vmap(problem.source.log_prob)(x)
        return self.objective(potential, x, problem) + jnp.mean(log_rho0) + log_z
