"""The semi-dual scheme: W2's Kantorovich dual with a second convex potential, for a target
known by samples."""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from mongeflow.maps.base import Array, Potential, decay_mask, transport
from mongeflow.maps.default import auto_widths
from mongeflow.maps.monge import newton_conjugate
from mongeflow.schemes.base import (
    DECAY_HELP,
    Scheme,
    StepInfo,
    apply_update,
    params_of,
    start_loss,
)
from mongeflow.settings import setting


class SemiDualState(NamedTuple):
    """The scheme's state: the dual potential ψ and both optimisers' states.

    Attributes:
        dual: ψ, a convex potential on the target's side (the same kind of network as φ).
        map_state, dual_state: Adam's states for φ and ψ.
        step: the outer step (the rates' schedule).
        finish_state: Adam's state for φ's descent after the game (``finish_steps``).
        rows, conjugates, solved: for that descent on a target that is a finite set of rows,
            ``[P]`` the indices of the P rows it draws from (all of them, or a random subset:
            :meth:`SemiDual.cached_rows`), ``[P, d]`` the last conjugate point ∇φ*(y) found for
            each, ``[P]`` whether it has been found yet; ``None`` otherwise.
    """

    dual: Potential
    map_state: Any
    dual_state: Any
    step: Array
    finish_state: Any = None
    rows: Any = None
    conjugates: Any = None
    solved: Any = None


def expectile(diff: Array, level: float) -> Array:
    """The asymmetric square of expectile regression: ``level``·diff² where diff ≥ 0, else
    (1 − ``level``)·diff² (Newey & Powell 1987)."""
    return jnp.where(diff >= 0, level, 1.0 - level) * diff**2


#: the stream folded into a step's key for the jitter's noise
JITTER_STREAM = 0x6A17
#: the stream folded into a step's key for the descent's further batches
FINISH_STREAM = 0xF1A1
#: the key of the subset of a target's rows whose conjugates the descent keeps, when it
#: keeps fewer than all (:meth:`SemiDual.cached_rows`)
CACHE_SEED = 0xCA
#: the stream folded into a descent step's key for the rows whose conjugates it refines
CACHE_STREAM = 0xCA5E


def jittered(rows: Array, scale: float, key: Array, keep_variance: bool = False) -> Array:
    """``rows`` plus Gaussian noise of ``scale`` times their standard deviation, coordinate by
    coordinate (a coordinate constant over the rows gets none). With ``keep_variance`` the
    noisy rows are then drawn towards the rows' mean by 1/√(1 + ``scale``²), so that each
    coordinate keeps its mean and variance (as a variance-preserving diffusion's forward
    step does)."""
    spread = jnp.std(rows, axis=0, keepdims=True)
    noisy = rows + scale * spread * jax.random.normal(key, rows.shape, rows.dtype)
    if not keep_variance:
        return noisy
    mean = jnp.mean(rows, axis=0, keepdims=True)
    return mean + (noisy - mean) / jnp.sqrt(1.0 + scale**2)


class SemiDual(Scheme):
    """The minimax form of W2's semi-dual, with two input-convex potentials.

    For the quadratic cost, the Brenier map from μ to ν is T = ∇ψ* for the convex ψ that
    minimises the semi-dual J(ψ) = E_ν[ψ(y)] + E_μ[ψ*(x)], ψ*(x) = sup_y ⟨x, y⟩ − ψ(y).
    The conjugate is amortised by the map itself, T_θ = ∇φ_θ (Makkuva, Taghvaei, Oh & Lee,
    ICML 2020; Korotin et al., NeurIPS 2021, "MM"): at each step, on a batch (x ~ μ, y ~ ν),

        φ ← descend  mean_i ψ(T(x_i)) − ⟨x_i, T(x_i)⟩       (T(x) → argmax_y ⟨x, y⟩ − ψ(y))
        ψ ← descend  mean_i ψ(y_i) − ψ(T̂(x_i)) + w R        (T̂ = T with its gradient stopped)

    so that ψ*(x) ≈ ⟨x, T̂(x)⟩ − ψ(T̂(x)). ``expectile_weight`` w adds the expectile
    regularisation R of Buzun, Bobrovskiy & Dylov (NeurIPS 2024, ENOT): the pairs (x_i, y_i)
    of the batch must not beat the amortised conjugate, Δ_i = ⟨x_i, y_i⟩ − ψ(y_i) −
    ⟨x_i, T̂(x_i)⟩ + ψ(T̂(x_i)) ≤ 0, and R = mean_i L_τ(Δ_i) (:func:`expectile`, τ =
    ``expectile``; ENOT writes its gradient as two halves, one through ψ(y_i), one through
    ψ(T̂(x_i)), whose sum is the gradient of R taken here). Both
    potentials move by Adam with the same rate, decaying to 0 over ``decay_steps``
    (first-moment decay 0.5, second 0.9: a game, not a descent); ψ starts as a copy of the
    starting φ (the pair is consistent at T = id, which is its own conjugate map).

    ``map_steps`` k moves φ k times (on the same batch, against the step's ψ) for each move
    of ψ, its rate decaying over k × ``decay_steps`` updates: the amortised conjugate then
    follows ψ more closely. On the Wasserstein-2 benchmark pair at d = 16 (batch 1 024,
    12 000 steps, one seed) k = 2 left 7.8 % L2-UVP in 162 s, k = 3 8.1 % in 204 s, against
    10.6 % in 132 s for k = 1 (and 8.4 % in 237 s for 24 000 steps of k = 1). Smaller
    batches and more steps did better at equal time there (k = 2, batch 256: 7.3 % after
    24 000 steps in 84 s, 5.75 % after 48 000 in 184 s), hence the one-way game's defaults:
    k = 2 and 48 000 steps (the automatic fit's batch: 256).

    ``bidirectional`` plays the same game from ν to μ after each step from μ to ν, as ENOT
    trains its pair of potentials: ψ then descends the amortisation loss on the target's
    rows (∇ψ(y) → argmax_x ⟨x, y⟩ − φ(x)) and φ the dual with its expectile term, on the
    swapped batch (y, x). Each potential is then trained as a map and as a dual (by one Adam
    state of its own, decaying over (k + 1) × ``decay_steps`` updates), and the conjugacy
    φ = ψ* is pressed from both sides. On the benchmark pair (batch 256, one seed,
    12 000 steps) it left 4.5 % L2-UVP at d = 16 against 9.0 % for the one-way game (k = 2),
    4.7 % against 7.0 % at d = 32, the same at d = 8 (4.5, 4.2, 4.0 % over three seeds
    against 4.3, 4.3, 4.4 %), but 7.9 % against 5.7 % at d = 64, where its pushforward was
    too narrow (trace of its covariance 0.81 of the target's). Over 48 000 steps (2^16 rows
    a side): 0.65, 1.26, 3.13, 2.80 % at d = 2, 4, 8, 16 against 1.70, 1.29, 3.50, 5.95 %
    one way, but 11.3 % against 5.4 % at d = 32, where the maps came to fit the finite
    samples (with 2^18 rows a side: 2.8 %; after 12 000 steps, three seeds: 3.9, 3.4, 4.1 %
    against 5.4, 5.1, 5.6 % one way after 48 000). With it, k = 1 did better than k = 2
    (4.5 % against 5.8 % at d = 16), hence ``map_steps`` 0: k = 1 in the bidirectional
    game, 2 in the one-way game. (These figures are those of softplus units; the fit's
    network for this scheme learns each unit's sharpness, :attr:`default_activation`.)

    ``jitter`` σ adds Gaussian noise of σ times the batch's standard deviation, coordinate by
    coordinate, to the rows of the sides ``jitter_rows`` names (both by default) at every
    step: the game then sees the two laws smoothed by a small Gaussian instead of the same
    finite rows again and again, which the networks otherwise come to fit (at the price of a
    bias of order σ² in the map). On the Wasserstein-2 benchmark pair at d = 64 (2^16 rows a
    side, one way, 48 000 steps of 256, one seed, on a GPU) σ = 0.1 left 3.2 % L2-UVP
    against 4.5 % without it and 5.9 % with σ = 0.2; with fresh samples at every step (no
    finite rows to fit) 2.5 % against 2.2 % (its bias); at d = 16 after 12 000 steps 1.77 %
    against 1.75 % without it. It lets a longer run go on improving where the unjittered
    game comes to fit its rows: through the command line (both ways, 48 000 steps) 1.35,
    1.62, 1.68 % at d = 8, 16, 32 with σ = 0.1 on both sides, against 2.23 % (d = 8) and
    2.13 % (d = 16) without it.

    ``jitter_rows`` names the sides jittered, and ``jitter_keeps_variance`` draws the noisy
    rows towards their mean by 1/√(1 + σ²), so that each coordinate keeps its variance. The
    target's jitter widens the law ψ learns; the source's alone smooths the map's own
    inputs. Played both ways, on the benchmark pair (in its own coordinates, one seed,
    48 000 steps, σ = 0.1): at d = 16 both sides left 1.61 %, the target's alone 2.22 %, the
    source's alone 1.50 %, and keeping its variance 1.39 %; at d = 8 both sides 1.45 %, the
    source's alone 1.22 %, keeping its variance 1.24 %. Through the command line, the
    source's alone keeping its variance left 1.38 and 1.39 % (two seeds) at d = 16 against
    1.62 and 1.65 % for both sides, 1.42 against 1.68 % at d = 32, and 1.41 and 1.53
    against 1.35 and 1.45 % at d = 8 (within the seeds' spread); on ``dense-pair`` at
    d = 16 0.62 and 0.67 % against 0.47 and 0.57 % (a cost). Played one way, at d = 64, the
    source's alone keeping its variance left 4.35 % and both sides keeping theirs 4.00 %,
    against 3.46 % for both sides as drawn: there ψ is only the target's dual, and the
    target's jitter is what keeps it off the rows.

    ``weight_decay`` λ shrinks both networks' layer weights and log-sharpnesses towards 0 at
    every update (AdamW; :meth:`~mongeflow.maps.Potential.decayed`), another way to keep the
    game from fitting finite rows. On the benchmark pair at d = 64 (one way, rate 0.003, the
    rows jittered, through the command line) λ = 0.01 left 2.78 and 2.95 % L2-UVP (seeds 0,
    1) against 3.23 and 3.08 % without it; leaving the sharpnesses out, 3.16 % (seed 0).

    ``finish_steps`` N: after the game's ``decay_steps`` (its rates then at 0), N more steps
    in which φ alone descends the semi-dual itself, E_μ φ(x) + E_ν φ*(y), on
    :attr:`finish_batches` of the loop's batches a step, unjittered, with φ*(y) = ⟨z, y⟩ −
    φ(z) at z = ∇φ*(y) (by the envelope theorem the gradient in φ's weights is that of mean
    φ(x) − mean φ(z) at z fixed), by Adam at ``finish_rate`` decaying to 0 (a run's steps
    are then ``decay_steps`` + N). The game, at the rates that carry its networks from the
    identity, settles where its loss still descends. Where the target is a finite set of
    rows (a fit's state, :meth:`start`), the state keeps each row's z
    (:attr:`SemiDualState.conjugates`; up to :meth:`cached_rows` rows) and each visit
    refines it by :attr:`finish_newton_cached` Newton's step (from the dual's map ∇ψ(y) at
    the first): φ moves little between two visits, so that one step finds what
    :attr:`finish_newton` steps from ∇ψ(y) find (the solve for a target that draws fresh
    samples), at a third of a step's cost (Amos, ICLR 2023, starts each conjugate's solve
    from a network's prediction; here the start is the row's own last solution). On the
    Wasserstein-2 benchmark pair at d = 8 (2^16 rows a side, the automatic game with the
    source's rows jittered, through the command line, a 2-core CPU), from one game (0.93 %
    L2-UVP): 300 steps left 0.73 % with the conjugates kept (31 s) and with them solved
    afresh (97 s); 1 500 and 2 000 steps kept 0.69 % (0.6915, 0.6857; 100 and 153 s), where
    1 500 afresh had reached 0.6955 % in 328 s; 1 500 steps of half the batches
    (``finish_batches`` 16) 0.705 %: the descent's batches count as much as its steps. Its
    conjugates' precision counts too: solved afresh by 1, 2, 4 and 6 Newton's steps, 300
    steps left 0.805, 0.738, 0.728 and 0.727 %; the conjugates of a fixed pool of target
    rows drawn with replacement (a bootstrap of the rows, its weights fixed for the whole
    descent) 0.79 %, of the rows themselves 0.73 % (both in-process, not through the command
    line). On the clamped network at d = 16 the step ran off at 0.03 and at 0.003 left
    0.81 % against the game's 1.38 % (0.18 % against 0.55 % on ``dense-pair``), and at d = 32
    0.83 % against 1.42 %, the conjugates kept (solved afresh: 0.82, 0.17 and 0.82 %, the
    whole fits 403, 206 and 531 s against 320, 81 and 432 s; the automatic fit's rates:
    :data:`mongeflow.auto.SEMIDUAL_CLAMPED_FINISH_RATE`); at d = 4, where the rows are not
    jittered, a prototype went from 0.30 to 0.35 %: the game there already ends nearer T*
    than the rows' own optimum.

    The scheme needs target rows in every batch (``needs_target_samples``) and does not use
    the fit's divergence to move: what it descends is the semi-dual itself; the divergence
    gives ``StepInfo.loss`` (at the step's starting map, on a batch of its own) and the fit
    its held-out figures. ``StepInfo.objective`` is the batch's estimate of W2²/2:
    mean ½|x|² + ½|y|² − ψ(y) − ⟨x, T̂(x)⟩ + ψ(T̂(x)).

    Example:
        >>> SemiDual(learning_rate=0.01).expectile
        0.99
    """

    learning_rate: float = setting(
        0.01, help="Adam's rate for φ and ψ (semidual)", low=0.0, low_open=True
    )
    decay_steps: int = setting(0, help=DECAY_HELP, static=True, low=0)
    expectile: float = setting(
        0.99,
        help="expectile τ of the conjugate's regularisation",
        low=0.5,
        high=1.0,
        high_open=True,
    )
    expectile_weight: float = setting(
        1.0, help="weight of the expectile regularisation (0: none)", low=0.0
    )
    map_steps: int = setting(
        0,
        help="updates of the map φ per update of the dual ψ, on the same batch (0: 1 in the "
        "bidirectional game, else 2) (semidual)",
        static=True,
        low=0,
    )
    bidirectional: bool = setting(
        False,
        help="play the game both ways: ψ also learns the map from ν to μ, φ its dual (semidual)",
        static=True,
    )
    jitter: float = setting(
        0.0,
        help="Gaussian noise added to each batch's rows, in units of the batch's standard "
        "deviation per coordinate (0: none) (semidual)",
        static=True,
        low=0.0,
    )
    jitter_rows: str = setting(
        "both",
        help="whose rows the jitter moves: the source's, the target's or both (semidual)",
        static=True,
        choices=("both", "source", "target"),
    )
    jitter_keeps_variance: bool = setting(
        False,
        help="draw the jittered rows towards their mean by 1/sqrt(1 + jitter^2), so that each "
        "coordinate keeps its variance (semidual)",
        static=True,
    )
    weight_decay: float = setting(
        0.0,
        help="decoupled weight decay of both networks' layer weights and sharpnesses, as AdamW "
        "(0: none) (semidual)",
        static=True,
        low=0.0,
    )
    finish_steps: int = setting(
        0,
        help="steps after the game in which φ alone descends the semi-dual, its conjugates "
        "solved by Newton's method (0: none) (semidual)",
        static=True,
        low=0,
    )
    finish_rate: float = setting(
        0.03,
        help="Adam's rate for φ's descent after the game, decaying to 0 over finish_steps "
        "(semidual)",
        low=0.0,
        low_open=True,
    )
    finish_batches: int = setting(
        32,
        help="the loop's batches each step of φ's descent after the game takes: a descent of "
        "the loss itself, where the game's small batches are noise (semidual)",
        static=True,
        low=1,
    )
    name: ClassVar[str] = "semidual"
    default_steps: ClassVar[int] = 48000
    #: Newton's steps that solve each conjugate in the descent after the game, from the
    #: dual's map ∇ψ(y)
    finish_newton: ClassVar[int] = 4
    #: Newton's steps that refine a target row's kept conjugate at each visit (from the
    #: dual's map ∇ψ(y) at its first)
    finish_newton_cached: ClassVar[int] = 1
    #: the descent keeps the conjugates of at most as many target rows as it visits this
    #: many times each (:meth:`cached_rows`)
    finish_visits: ClassVar[int] = 8
    needs_target_samples: ClassVar[bool] = True
    #: each unit of both networks learns its sharpness β in softplus(β u)/β. On the
    #: Wasserstein-2 benchmark pair (both ways, 12 000 steps of 256, one seed) it left 0.17,
    #: 1.5, 1.7 % L2-UVP at d = 2, 8, 16 against 0.88, 4.5, 4.5 % with softplus; on
    #: ``dense-pair`` at d = 16, whose potential is softplus-smooth, 0.63 % against 0.33 %.
    default_activation: ClassVar[str] = "beta-softplus"
    #: up to this dimension both networks have widths (64, 64) (:meth:`default_widths`)
    narrow_dim: ClassVar[int] = 64
    #: up to this dimension, over at least :attr:`reparametrised_steps` steps, both networks
    #: keep their weights non-negative by a softplus reparametrisation
    #: (:meth:`default_nonnegativity`)
    reparametrised_dim: ClassVar[int] = 8
    reparametrised_steps: ClassVar[int] = 12000

    @classmethod
    def default_widths(cls, dim: int) -> tuple[int, ...]:
        """(64, 64) up to d = :attr:`narrow_dim`, then
        :func:`~mongeflow.maps.default.auto_widths` (2d, 2d). Where the game is limited by
        its finite rows, a wider network fits them sooner: on the Wasserstein-2 benchmark
        pair at d = 64 (2^16 rows a side, through the command line, the automatic settings
        otherwise, two seeds) (64, 64) left 3.46 and 3.42 % L2-UVP in 248 and 239 s against
        3.36 and 3.63 % in 438 and 422 s for (128, 128), and (256, 256) 5.8 % against
        4.5 % (one seed, before the rows were jittered); on ``dense-pair`` at d = 64 (9 000
        rows a side, one seed, 48 000 steps) 10.8 % in 224 s against 12.9 % in 425 s. At
        d = 128 (128, 128) left 5.15 and 4.54 % (two seeds) in 153 and 150 s against 5.01
        and 4.39 % in 243 and 239 s for (256, 256): faster but not better, so (2d, 2d)
        stays there."""
        return (64, 64) if dim <= cls.narrow_dim else auto_widths(dim)

    def default_nonnegativity(self, dim: int) -> str:
        """``"softplus"`` (W = softplus(W_raw), :class:`~mongeflow.maps.ICNN`) up to d =
        :attr:`reparametrised_dim` when the rate decays over at least
        :attr:`reparametrised_steps` steps, else ``"clamp"`` (W projected onto W ≥ 0 after
        each update). Clamping sets to 0, at every step, each weight that a noisy update of the
        game pushed below it; under the reparametrisation a weight only tends to 0, and
        Adam's steps act on W_raw, relatively smaller on small weights. On the
        Wasserstein-2 benchmark pair (2^16 rows a side, both ways, 48 000 steps of 256, the
        automatic settings otherwise) it left 0.053 % L2-UVP at d = 2 against 0.141 %, and
        0.41 and 0.51 % at d = 4 (two seeds) against 0.73 and 0.69 %; at d = 8 (the rows
        jittered) 1.32 % against 1.26 % at the clamped network's rate 0.01, but through the
        command line at rates 0.02, 0.03, 0.05 1.09, 1.04, 1.04 % (seed 0) and 1.19, 1.10 %
        (seed 1, 0.02 and 0.03) against the clamped default's 1.37 and 1.53 %: the
        reparametrised network wants a faster game (``mongeflow.auto``'s
        ``SEMIDUAL_REPARAMETRISED_RATE``). At d = 16 1.68 and 1.52 % (rates 0.02, 0.05)
        against 1.38 %, so the clamp stays from there. Fitting the network to T* itself by
        regression (fresh samples, 48 000 steps of 256, one seed) it left 0.47 % against
        0.74 % at d = 8.
        The reparametrised network starts slower (its output weights start at
        softplus(W_raw) = 1e-4, where their gradient is 1e-4 times the clamped one's):
        5.5 % against 0.96 % after 1 000 steps (2^13 rows a side at d = 2), but 0.119 %
        against 0.145 % after 12 000 (2^16 rows). The default network, reparametrised,
        starts its hidden non-negative weights at a third of the clamped one's scale
        (:data:`~mongeflow.maps.default.REPARAMETRISED_SCALE`)."""
        long = self.decay_steps >= self.reparametrised_steps
        return "softplus" if dim <= self.reparametrised_dim and long else "clamp"

    @property
    def settles(self) -> bool:
        """With ``decay_steps``, both rates decay to 0: the game's latest maps are its most
        converged, while a held-out two-sample figure, blind to optimality, ranks them by its
        noise. On ``dense-pair`` at d = 8 (one seed) the lowest held-out Sinkhorn divergence,
        within a tenth of its noise floor, picked step 1 350's map (0.47 % L2-UVP) over the
        last one's (0.09 %); on the Wasserstein-2 benchmark pairs (d = 4 to 64, 2^16 or 8 192
        rows a side) and ``dense-pair`` (d = 8 to 64, three seeds at d = 8) the last map was
        within 0.2 points of L2-UVP (in %) of the history's best every time."""
        return self.decay_steps > 0

    def _optimizer(self, updates_per_step: int = 1) -> optax.GradientTransformation:
        """Adam with the scheme's rate, decaying over ``decay_steps`` outer steps of
        ``updates_per_step`` updates each; with ``weight_decay`` λ, AdamW (Loshchilov &
        Hutter, ICLR 2019): each update also takes rate × λ × W off the layers' weights and
        log-sharpnesses W (:meth:`~mongeflow.maps.Potential.decayed`), not off the biases
        or the affine part of the map."""
        rate = self.learning_rate
        if self.decay_steps > 0:
            rate = optax.cosine_decay_schedule(
                self.learning_rate, self.decay_steps * updates_per_step
            )
        if self.weight_decay:
            decay = self.weight_decay
            return optax.adamw(rate, b1=0.5, b2=0.9, weight_decay=decay, mask=decay_mask)
        return optax.adam(rate, b1=0.5, b2=0.9)

    @property
    def map_updates(self) -> int:
        """k, the map's updates per update of its dual: ``map_steps``, or when it is 0, 1 in
        the bidirectional game and 2 in the one-way game."""
        return self.map_steps or (1 if self.bidirectional else 2)

    def _updates(self) -> int:
        """Updates of each potential per outer step: k as the map, and in the bidirectional
        game one more as the other side's dual."""
        return self.map_updates + 1 if self.bidirectional else self.map_updates

    def _optimizers(self) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
        """φ's and ψ's: φ's schedule counts :meth:`_updates` a step; ψ's one (its dual update)
        one way, and the same as φ's both ways (where each is a map and a dual)."""
        map_opt = self._optimizer(self._updates())
        return map_opt, (map_opt if self.bidirectional else self._optimizer())

    def __check_init__(self):
        if self.finish_steps and not self.decay_steps:
            raise ValueError(
                "finish_steps needs decay_steps > 0: the descent after the game starts where "
                f"the game's rates have decayed to 0 (got finish_steps={self.finish_steps}, "
                "decay_steps=0)"
            )

    def _finish_optimizer(self) -> optax.GradientTransformation:
        """Adam (its usual moments: a descent, not a game) at ``finish_rate``, decaying to 0
        over ``finish_steps``."""
        return optax.adam(optax.cosine_decay_schedule(self.finish_rate, self.finish_steps))

    def cached_rows(self, rows: int, batch_size: int) -> int:
        """How many of a target's ``rows`` the descent after the game draws from, keeping
        each one's conjugate: all of them, or as many as the descent visits
        :attr:`finish_visits` times each (``finish_steps`` × ``finish_batches`` ×
        ``batch_size`` / :attr:`finish_visits`), whichever is fewer."""
        visited = self.finish_steps * self.finish_batches * batch_size // self.finish_visits
        return max(1, min(rows, visited))

    def init(self, potential: Potential) -> SemiDualState:
        map_opt, dual_opt = self._optimizers()
        params = params_of(potential)
        finish = self._finish_optimizer().init(params) if self.finish_steps else None
        return SemiDualState(
            potential,
            map_opt.init(params),
            dual_opt.init(params),
            jnp.zeros((), jnp.int32),
            finish,
        )

    def start(self, potential: Potential, task) -> SemiDualState:
        """:meth:`init`'s state; for a target that is a finite set of rows
        (``task.target_rows``) and a descent after the game, with room for the conjugates
        of up to :meth:`cached_rows` of them (:attr:`SemiDualState.conjugates`)."""
        state = self.init(potential)
        rows = task.target_rows if self.finish_steps else None
        if rows is None:
            return state
        n, d = rows.shape
        kept = self.cached_rows(n, task.batch_size)
        index = (
            jnp.arange(n, dtype=jnp.int32)
            if kept == n  # else a subset drawn once, without replacement
            else jax.random.choice(jax.random.key(CACHE_SEED), n, (kept,), replace=False)
        )
        return state._replace(
            rows=index.astype(jnp.int32),
            conjugates=jnp.zeros((kept, d), rows.dtype),
            solved=jnp.zeros(kept, bool),
        )

    def _half(self, phi, psi, phi_state, psi_state, x, y, phi_opt, psi_opt):
        """One side of the game on (x ~ its source, y ~ its target): ψ descends the dual with
        its expectile term, then φ descends the amortisation loss k (:attr:`map_updates`) times
        against the step's ψ. Returns φ, ψ, their optimiser states and the batch's W2²/2."""
        t_hat = jax.lax.stop_gradient(transport(phi, x))
        inner_xt = jnp.sum(x * t_hat, axis=-1)
        inner_xy = jnp.sum(x * y, axis=-1)

        def dual_loss(dual):
            psi_y = jax.vmap(dual)(y)
            psi_t = jax.vmap(dual)(t_hat)
            loss = jnp.mean(psi_y) - jnp.mean(psi_t)
            if self.expectile_weight:
                gap = inner_xy - psi_y - inner_xt + psi_t  # Δ_i
                loss = loss + self.expectile_weight * jnp.mean(expectile(gap, self.expectile))
            value = jnp.mean(0.5 * jnp.sum(x**2, -1) + 0.5 * jnp.sum(y**2, -1) - psi_y)
            return loss, value - jnp.mean(inner_xt - psi_t)

        def map_loss(map_potential):
            t = transport(map_potential, x)
            return jnp.mean(jax.vmap(psi)(t) - jnp.sum(x * t, axis=-1))

        (_, w2_half), dual_grads = eqx.filter_value_and_grad(dual_loss, has_aux=True)(psi)
        dual_updates, psi_state = psi_opt.update(dual_grads, psi_state, params_of(psi))
        for _ in range(self.map_updates):  # φ against the step's ψ
            map_grads = eqx.filter_grad(map_loss)(phi)
            map_updates, phi_state = phi_opt.update(map_grads, phi_state, params_of(phi))
            phi = apply_update(phi, map_updates)
        return phi, apply_update(psi, dual_updates), phi_state, psi_state, w2_half

    def jittered_rows(self, x: Array, y: Array, key: Array) -> tuple[Array, Array]:
        """The batch's rows as the game sees them: those of the sides ``jitter_rows`` names
        moved by :func:`jittered` (``jitter``, ``jitter_keeps_variance``), each side by noise
        of its own drawn from ``key`` (the step's key, folded with :data:`JITTER_STREAM`, so
        that the step's other uses of it are unchanged)."""
        if not self.jitter:
            return x, y
        kx, ky = jax.random.split(jax.random.fold_in(key, JITTER_STREAM))
        if self.jitter_rows != "target":
            x = jittered(x, self.jitter, kx, self.jitter_keeps_variance)
        if self.jitter_rows != "source":
            y = jittered(y, self.jitter, ky, self.jitter_keeps_variance)
        return x, y

    def step(self, potential, state: SemiDualState, batch, task, key):
        if batch.y is None:
            raise ValueError("the semidual scheme needs target rows in every batch")
        if not self.finish_steps:
            return self._game_step(potential, state, batch, task, key)
        return jax.lax.cond(
            state.step < self.decay_steps,
            self._game_step,
            self._finish_step,
            potential,
            state,
            batch,
            task,
            key,
        )

    def _finish_step(self, potential, state: SemiDualState, batch, task, key):
        """φ descends the semi-dual E_μ φ(x) + E_ν φ*(y) on rows as drawn (no jitter),
        φ*(y) = ⟨z, y⟩ − φ(z) at z = ∇φ*(y); by the envelope theorem the gradient in φ's
        weights is that of mean φ(x) − mean φ(z) at z fixed. Where the state keeps the
        target rows' conjugates, z is found by :attr:`finish_newton_cached` Newton's steps
        from the row's last one (from the dual's map ∇ψ(y) at its first visit), the target
        rows drawn from the state's (:attr:`SemiDualState.rows`); else by
        :attr:`finish_newton` steps from ∇ψ(y) (ψ ≈ φ* after the game), on the batches'
        own target rows."""
        if self.finish_batches > 1:  # the step's batch and more of the loop's own
            keys = jax.random.split(jax.random.fold_in(key, FINISH_STREAM), self.finish_batches - 1)
            more = jax.vmap(task.sample)(keys)
            x = jnp.concatenate([batch.x, more.x.reshape(-1, batch.x.shape[-1])])
            y = jnp.concatenate([batch.y, more.y.reshape(-1, batch.y.shape[-1])])
        else:
            x, y = batch.x, batch.y
        cached = state.conjugates is not None
        if cached:  # as many of the rows whose conjugates are kept, drawn with replacement
            draw = jax.random.fold_in(key, CACHE_STREAM)
            which = jax.random.randint(draw, (y.shape[0],), 0, state.rows.shape[0])
            y = task.target_rows[state.rows[which]]
            if task.sampler.sharding is not None:
                y = jax.lax.with_sharding_constraint(y, task.sampler.sharding)
            solved = state.solved[which][:, None]
            start = jnp.where(solved, state.conjugates[which], transport(state.dual, y))
            steps = self.finish_newton_cached
        else:
            start, steps = transport(state.dual, y), self.finish_newton
        solve = lambda yi, zi: newton_conjugate(potential, yi, steps, zi)  # noqa: E731
        z = jax.lax.stop_gradient(jax.vmap(solve)(y, start))  # a constant of the loss below
        if cached:
            conjugates = state.conjugates.at[which].set(z)
            state = state._replace(conjugates=conjugates, solved=state.solved.at[which].set(True))

        def loss(phi):
            return jnp.mean(jax.vmap(phi)(x)) - jnp.mean(jax.vmap(phi)(z))

        value, grads = eqx.filter_value_and_grad(loss)(potential)
        updates, finish_state = self._finish_optimizer().update(
            grads, state.finish_state, params_of(potential)
        )
        moved = apply_update(potential, updates)
        # the batch's W2²/2: mean ½|x|² + ½|y|² − φ(x) − ⟨z, y⟩ + φ(z)
        half = 0.5 * jnp.mean(jnp.sum(x**2, -1) + jnp.sum(y**2, -1)) - value
        w2_half = half - jnp.mean(jnp.sum(z * y, -1))
        new = state._replace(step=state.step + 1, finish_state=finish_state)
        return moved, new, StepInfo(start_loss(task, potential, key), w2_half)

    def _game_step(self, potential, state: SemiDualState, batch, task, key):
        """One step of the game (both ways with ``bidirectional``)."""
        x, y = self.jittered_rows(batch.x, batch.y, key)
        map_opt, dual_opt = self._optimizers()
        moved, dual, map_state, dual_state, w2_half = self._half(
            potential, state.dual, state.map_state, state.dual_state, x, y, map_opt, dual_opt
        )
        if self.bidirectional:  # the same game from ν to μ: ψ the map, φ its dual
            dual, moved, dual_state, map_state, _ = self._half(
                dual, moved, dual_state, map_state, y, x, map_opt, map_opt
            )
        new = state._replace(
            dual=dual, map_state=map_state, dual_state=dual_state, step=state.step + 1
        )
        info = StepInfo(start_loss(task, potential, key), w2_half)
        return moved, new, info
