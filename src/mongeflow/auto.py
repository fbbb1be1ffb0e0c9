"""Settings chosen from the problem: what ``fit`` and ``mongeflow fit`` use when the user
names no scheme, widths or steps.

The rules come from measurements on problems the defaults were not tuned on (the
``dense-potential`` family, the logistic-regression posteriors), one seed, on a 2-core CPU:

- **Adam with a cosine decay of its rate to 0** (``learning_rate`` 0.1 up to d = 16, then
  1.6/d: :func:`auto_learning_rate`) on the exact log-det loss. On ``dense-potential`` at
  d = 16 (standardised) it reached 0.7 % L2-UVP in 2 000 steps (76 s), where the implicit
  scheme reached 3.4 % (72 s) and the natural-gradient one 8.0 % (331 s), both at their
  registered defaults with widths 20; the linear map is at 7.5 %. The decay removes the
  mini-batch noise a constant rate leaves (7.4 % → 3.9 %, widths 20, raw coordinates), and
  standardising removed most of the rest (3.9 % → 2.3 %).
- **Widths that grow with d**: (64, 64) up to d = 32, then (2d, 2d); widths 20 were the
  main error left at d = 16 (2.3 % → 1.0 %). (The semi-dual game, for a target known by
  samples, keeps (64, 64) up to d = 64: :meth:`~mongeflow.schemes.SemiDual.default_widths`.)
- **Steps**: 2 000, the cap of an early-stopped fit.
- A divergence whose loss is only a gradient surrogate (a drift field) is followed with the
  explicit scheme instead, since it has no value to descend: 80 steps (:data:`DRIFT_STEPS`),
  τ decaying from :func:`auto_drift_tau` to 0, every step run. On ``dense-pair``
  (n = 10⁴ per side) the registered default (constant τ = 0.4, 10 steps) overshot
  (L2-UVP 13.5 % at d = 2 and 24.3 % at d = 8); a constant τ = 0.1 over 40 steps reached
  0.83 % and 3.6 %, the decaying schedule 0.40 % and 1.9 %.
- Each of those steps solves its regression with 200 inner Adam steps whose rate decays to
  0 within the step (:data:`DRIFT_INNER_STEPS`; the paper's 100 at a constant rate leave
  the inner solution at the noise of its last mini-batches). On ``dense-pair``, seed 0,
  d = 8 / 16 / 32: 3.06 / 4.06 / 8.97 % → 0.94 / 3.74 / 6.58 %, and the energy distance to
  held-out target samples from 2.6 / 1.2 / 1.3 to 1.9 / 0.9 / 0.9 times its two-sample
  floor. Decay with 100 inner steps (4.6 % at d = 8) or 400 inner steps (4.3 % at d = 16)
  did not do better; a velocity batch of 1 024 at d = 16 (4.1 %, 5× the time) neither.
- The drift's kernels are sharper at small d (temperatures 0.01, 0.02, 0.05 up to d = 8,
  0.01, 0.05, 0.2 up to d = 16, instead of the authors' 0.02, 0.05, 0.2:
  :func:`auto_drift_temperatures`): the sharp set alone helped ``dense-pair`` at d = 16
  (3.9 % → 2.6 % L2-UVP over three seeds) but failed the W2 benchmark's multimodal pairs
  there (64.9 % against the linear map's 41.6 %); the mixed set reached 3.6 % and 10.8 %.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

from mongeflow.divergences import DIVERGENCES, Divergence, Drift
from mongeflow.loop import MIN_STEPS
from mongeflow.maps.default import auto_widths
from mongeflow.problems import Problem
from mongeflow.schemes import Adam, Explicit, Scheme, SemiDual
from mongeflow.schemes.inner import AdamInner
from mongeflow.settings import flat, unknown

#: outer steps of an automatically configured fit (a cap: fits stop early on a plateau)
AUTO_STEPS = 2000
#: records without a better held-out figure before a fit stops (``fit(patience="auto")``)
AUTO_PATIENCE = 5
#: the mini-batch of an automatically configured fit (as :func:`mongeflow.fit`'s default)
AUTO_BATCH = 256


def auto_batch_size(dim: int) -> int:
    """The automatic fit's mini-batch: 256, and 128 above d = 32, where the fit runs
    2·256/128 = twice as many steps (:func:`choose`), the same number of samples.

    Above d = 32 the fit is limited by its number of steps, not by the gradient's noise.
    Measured on ``dense-potential`` at d = 64 (Adam, rate 1.6/d decaying over the run,
    one seed), at an equal number of samples: batch 512 × 1 000 steps 6.34 % L2-UVP, batch
    256 × 2 000 steps 2.18 %, batch 128 × 4 000 steps 1.88 % (the linear map 7.95 %; 223,
    266 and 239 s). Lowering the rate (0.0125: 7.7 %) or raising it (0.1 with a warm-up:
    3.8 %) at batch 256 did not help.
    """
    return AUTO_BATCH // 2 if int(dim) > 32 else AUTO_BATCH


#: the number of steps of the explicit scheme for a divergence given only by a velocity
DRIFT_STEPS = 80
#: inner Adam steps of each of those explicit steps (their rate decaying to 0 within each)
DRIFT_INNER_STEPS = 200


def auto_drift_tau(dim: int) -> float:
    """The explicit scheme's initial τ on a drift field: min(0.3, 0.6/√d), decaying to 0.

    The drift field is normalised (:class:`~mongeflow.divergences.Drift`): its size does
    not shrink as T#μ meets γ, and its length, in standardised units, grows like √d. So a
    constant τ leaves a step of fixed length whose direction is noise at the end, and the
    same τ is a longer step at larger d. A cosine decay of τ to 0 over the run removes the
    first; τ₀ ∝ 1/√d the second. Measured on ``dense-pair`` (n = 10⁴ per side, 80 steps,
    one seed, L2-UVP of the last map on the held-out rows): d = 2, τ₀ = 0.3: 0.40 %;
    d = 8, τ₀ = 0.1 / 0.15 / 0.2: 3.8 / 2.3 / 1.9 %; d = 16, τ₀ = 0.1 / 0.15 / 0.2: 4.9 /
    4.1 / 12.2 % (the last unstable: 42 % at step 48). With a constant τ = 0.1 the same
    problems gave 0.83, 3.6 and 5.6 %.
    """
    return min(0.3, 0.6 / max(int(dim), 1) ** 0.5)


#: the drift's temperatures up to :data:`SHARP_DRIFT_MAX_DIM`
SHARP_DRIFT_TEMPERATURES = (0.01, 0.02, 0.05)
SHARP_DRIFT_MAX_DIM = 8
#: the drift's temperatures above :data:`SHARP_DRIFT_MAX_DIM` up to :data:`MIXED_DRIFT_MAX_DIM`
#: (above: the authors' 0.02, 0.05, 0.2)
MIXED_DRIFT_TEMPERATURES = (0.01, 0.05, 0.2)
MIXED_DRIFT_MAX_DIM = 16


def auto_drift_temperatures(dim: int) -> tuple[float, ...]:
    """The drift's kernel temperatures R: 0.01, 0.02, 0.05 up to d = 8; 0.01, 0.05, 0.2 up to
    d = 16; above, the authors' 0.02, 0.05, 0.2 (Deng et al. 2026;
    :class:`~mongeflow.divergences.Drift`).

    Once T#μ is near γ, the widest kernel (R = 0.2, a width of a fifth of the mean distance)
    averages over most of a batch and its field, normalised to the size of the others, no
    longer points at the remaining error; but with only sharp kernels the field is a
    nearest-neighbour match within the batch, which does not move mass between the modes of
    a multimodal target. Measured (one seed, the explicit scheme of :func:`choose`, L2-UVP
    of the kept map on held-out rows; sharp / mixed / authors' sets):

    - ``dense-pair`` (n = 10⁴ per side), d = 16: 3.12 / 3.63 / 4.35 % (fit seeds 1 and 2
      with the sharp set: 3.03, 1.66 %; the authors' 3.74, 3.85 %); d = 8: 0.84 / 1.23 /
      1.09 %; d = 32: the sharp set 6.52 % against the authors' 6.29 %;
    - the W2 benchmark's pairs (``w2-pair``, 2^16 rows per side; the linear map 41.6 % at
      d = 16, 27.3 % at d = 8), d = 16: 64.9 / 10.8 / 16.3 % (the sharp set's energy
      distance rose from the first step on: 0.26 to 0.30, the linear map's 0.036); d = 8:
      5.85 / 6.69 / 6.25 %; d = 32: the mixed set 54.3 %, the authors' 51.8 % (both at the
      linear map's level, whose energy distance is far lower: the linear map is kept).

    Also at d = 16 on ``w2-pair``: 0.02, 0.05, 0.1: 13.5 %; 0.2, 0.5, 1: 27.2 %; on
    ``dense-pair`` (earlier) 0.05, 0.2, 0.5: 5.8 %; 0.2, 0.5, 1: 6.9 %; 0.005, 0.01, 0.02
    diverged (34 %).
    """
    if int(dim) <= SHARP_DRIFT_MAX_DIM:
        return SHARP_DRIFT_TEMPERATURES
    if int(dim) <= MIXED_DRIFT_MAX_DIM:
        return MIXED_DRIFT_TEMPERATURES
    return Drift().temperatures


def auto_learning_rate(dim: int) -> float:
    """Adam's initial rate: 0.1 up to d = 16, then 1.6/d.

    Measured on ``dense-potential`` (cosine decay, default widths): at d = 16 the rate 0.1
    beat 0.05 and 0.01 (0.77 %, 0.99 %, 7.0 % L2-UVP after 1 000 steps); at d = 64 with
    widths (128, 128) the rate 0.1 stalled above the linear map (13.5 % against 7.9 %, the
    held-out objective rising after step 100) while 0.02 decreased steadily (7.9 % after
    400 steps, still falling); the default fit at d = 64 (1.6/d = 0.025) reached 2.18 %
    with 2 000 steps of batch 256 and 1.90 % with 4 000 of batch 128
    (:func:`auto_batch_size`), against the linear map's 7.95 %.
    """
    return min(0.1, 1.6 / max(int(dim), 1))


def choose_divergence(problem: Problem, scheme: Scheme | str | None = None) -> Divergence:
    """The KL when the target has a potential V. For a target known by samples: with no
    scheme named, or the ``semidual`` scheme, the energy distance, which then only gives
    the held-out figures (the automatic fit runs the semi-dual scheme, :func:`choose`);
    with another scheme named, the drifting field (:class:`~mongeflow.divergences.Drift`),
    which the explicit scheme follows: the constrained drifting model of Dumont, Lacombe &
    Vialard (2026).

    Why the semi-dual scheme for a target known by samples: on the W2 benchmark's pairs
    (2^16 rows per side) it reached 1.37, 1.83, 5.18, 11.1, 10.6 and 12.7 % L2-UVP at
    d = 2, 4, 8, 16, 32, 64, where the drift followed by the explicit scheme reached 4.78,
    4.01, 5.87, 15.6 % and, from d = 32, no better than the linear map (56.3, 64.0 %; the
    linear map 55.7, 63.8 %); on ``dense-pair`` (10⁴ rows per side) 0.384 and 1.59 % at
    d = 8, 16 against the drift's 0.43 and 3.63 % (``benchmarks/w2/semidual``,
    ``benchmarks/twosample/semidual``; the scheme's first settings, 12 000 steps of 1 024
    with one map update a step). At the settings before the descent after the game
    (48 000 steps of 256, the game played
    both ways up to d = 32, one way with two map updates above; above d = 4 the rows
    jittered by :data:`SEMIDUAL_JITTER` of their spread (both ways and with the source a set
    of rows, the source's alone: :data:`SEMIDUAL_JITTER_ROWS`) and the steps following the
    training rows (:func:`semidual_steps`); each unit's sharpness learnt, widths (64, 64) up
    to d = 64: :func:`_semidual`, :attr:`~mongeflow.schemes.SemiDual.default_activation`),
    through the command line: 0.19, 0.71, 1.37, 1.38, 1.42, 3.46 and 5.01 % on the W2 pairs
    at d = 2 … 128, the last map kept (0.24 and 1.41 % at d = 2 and 8 when the lowest
    held-out figure chose it; 1.35, 1.62, 1.68 % at d = 8, 16, 32 with both sides' rows
    jittered; 1.77, 1.88, 2.00 % after 12 000 steps without the jitter; 4.71 and 5.07 % at
    d = 64, 128 before the jitter; 3.36 % at d = 64 with widths (128, 128)), 0.15 and
    0.55 % on ``dense-pair`` (8 100 steps for its 8 100 rows; after 12 000 steps 0.17 and
    0.62 %, and 0.16 and 0.47 % with both sides' rows jittered)
    (``benchmarks/readme/output-samples.md``, ``benchmarks/w2/limits/output-cli.txt``; with
    softplus units 0.65, 1.26, 3.13, 2.80, 3.91, 5.48, 12.9 % and 0.13, 1.06 %). The descent
    after the game (:data:`SEMIDUAL_FINISH_STEPS`, :data:`SEMIDUAL_REPARAMETRISED_FINISH_STEPS`)
    took d = 8, 16, 32 to 0.69, 0.81 and 0.83 %, and ``dense-pair`` at d = 16 to 0.18 %.

    The drift against Adam on a sample divergence, measured earlier:

    Measured on the two-sample problems (n = 10⁴ per side, 10 % held out, L2-UVP against
    T* on the held-out rows; ``mongeflow bench twosample``, and the same fits with the
    held-out rows used for selection in ``benchmarks/twosample/defaults/``): on
    ``dense-pair`` the drift (constant τ = 0.1) reached 0.83 %, 3.6 % and 5.6 % at d = 2, 8,
    16 where Adam on the energy distance stayed near the linear map (2.4 %, 10.1 %, 6.7 %;
    the linear map 4.6 %, 9.1 %, 5.9 %), with or without early stopping or a 4× larger
    batch; with τ decaying (:func:`auto_drift_tau`) 0.40 %, 3.06 % and 4.06 %, but 8.97 % at
    d = 32 where the linear map has 6.73 %; with the inner solve converged
    (:data:`DRIFT_INNER_STEPS`) 0.43 %, 0.94 %, 3.74 % and 6.58 % at d = 2, 8, 16, 32, and
    7.64 % at d = 64 where the linear map has 6.32 %. On ``gaussian-pair``, where the linear map is
    exact, the energy distance reached 0.74 % and 0.24 % at d = 8, 16, the decaying drift
    0.29 % and 1.15 %.

    The drift's temperatures are :func:`auto_drift_temperatures` of d.
    """
    if problem.target.has_potential:
        return DIVERGENCES["kl"]
    if _named(scheme) in (None, "semidual"):
        return DIVERGENCES["energy"]
    return Drift(temperatures=auto_drift_temperatures(problem.dim))


def configure_divergence(name: str, problem: Problem) -> Divergence:
    """The registered divergence ``name`` with the rules of :func:`choose_divergence` for
    its settings: the drift's temperatures follow :func:`auto_drift_temperatures`; the
    others are their registered values."""
    if name not in DIVERGENCES:
        raise ValueError(unknown("divergence", name, DIVERGENCES))
    if name == "drift":
        return Drift(temperatures=auto_drift_temperatures(problem.dim))
    return DIVERGENCES[name]


@dataclasses.dataclass(frozen=True)
class Choice:
    """What :func:`choose` picked, and why (``reasons``, one line each)."""

    scheme: Scheme
    widths: tuple[int, ...]
    steps: int
    reasons: tuple[str, ...]
    #: history records without a new kept map before a seed stops; ``None``: every step
    patience: int | None = AUTO_PATIENCE
    #: the mini-batch (:func:`auto_batch_size`; at most the training rows, in ``fit``)
    batch_size: int = AUTO_BATCH


def choose(
    problem: Problem,
    divergence: Divergence,
    steps: int | None = None,
    scheme: str | None = None,
    automatic: bool = False,
) -> Choice:
    """The scheme, widths and number of steps for ``problem`` and ``divergence``.

    Args:
        problem, divergence: what is solved.
        steps: the number of outer steps, or ``None`` for the rule's.
        scheme: ``None`` to choose the scheme too (Adam on a divergence with a loss value,
            the explicit scheme on a velocity); or a registered scheme name, which gets the
            same rules for every setting that has one (:func:`configure_named`).
        automatic: the divergence is :func:`choose_divergence`'s, not one the user named:
            with no scheme named, a target known by samples only gets the semi-dual scheme
            (:class:`~mongeflow.schemes.SemiDual`, the rules of :func:`_semidual`).

    Example:
        >>> import mongeflow as mf
        >>> c = choose(mf.get_problem("gaussian", dim=3), mf.KL())
        >>> c.scheme.name, c.widths, c.scheme.decay_steps == c.steps
        ('adam', (64, 64), True)
    """
    if scheme is not None:
        return configure_named(scheme, problem, divergence, steps)
    if automatic and not problem.target.has_potential:
        return _semidual(problem, steps)
    d = problem.dim
    widths = auto_widths(d)
    reasons = [f"widths {widths} for d = {d}"]
    if divergence.loss_is_value:
        return _adam(problem, divergence, steps, reasons)
    else:
        steps = int(steps or DRIFT_STEPS)
        tau = auto_drift_tau(d)
        inner = AdamInner(steps=DRIFT_INNER_STEPS, decay=True)
        scheme = Explicit(tau=tau, decay_steps=steps, inner=inner)
        reasons.append(
            f"explicit, τ = {tau:.3g} decaying to 0 over {steps} steps, every step run, "
            f"{inner.steps} inner Adam steps with a decaying rate: the {divergence.name} "
            "divergence gives a velocity, not a loss value"
        )
        return Choice(scheme, widths, steps, tuple(reasons), patience=None)


def _adam(problem: Problem, divergence: Divergence, steps: int | None, reasons: list) -> Choice:
    """Adam with the rate of :func:`auto_learning_rate` decaying to 0 over the run, and the
    batch of :func:`auto_batch_size` (the automatic fit on a loss)."""
    d = problem.dim
    batch = auto_batch_size(d)
    steps = int(steps or AUTO_STEPS * AUTO_BATCH // batch)
    if batch != AUTO_BATCH:
        reasons.append(f"batch {batch} for d = {d}: more steps, the same samples")
    rate = auto_learning_rate(d)
    reasons.append(
        f"adam, rate {rate:.3g} decaying to 0 over {steps} steps, on the {divergence.name} loss"
    )
    scheme = Adam(learning_rate=rate, decay_steps=steps)
    return Choice(scheme, auto_widths(d), steps, tuple(reasons), batch_size=batch)


#: the semi-dual scheme's mini-batch: on the Wasserstein-2 benchmark pair at d = 16, 256
#: rows × 24 000 steps beat 1 024 × 12 000 in half the time (7.3 % L2-UVP in 84 s against
#: 7.8 % in 162 s, two map updates a step); 4 096 × 4 000 did worse than 1 024 × 12 000
SEMIDUAL_BATCH = 256


#: the largest dimension at which the automatic semi-dual game is bidirectional
#: (:class:`~mongeflow.schemes.SemiDual`). On the Wasserstein-2 benchmark pairs through
#: the command line (48 000 steps of 256, one seed) it left 0.65, 1.26, 3.13 and 2.80 %
#: L2-UVP at d = 2, 4, 8, 16 against 1.70, 1.29, 3.50 and 5.95 % one way; at d = 32 (three
#: seeds) 3.9, 3.4, 4.1 % after 12 000 steps (the default there then) against 5.4,
#: 5.1, 5.6 % one way after 48 000; at d = 64, 7.9 % against 5.7 % after 12 000 steps
SEMIDUAL_BIDIRECTIONAL_DIM = 32
#: above this dimension the automatic semi-dual game jitters each batch's rows by
#: :data:`SEMIDUAL_JITTER` of their spread and runs as many steps as its training rows
#: allow (:func:`semidual_steps`). Without the jitter, longer runs drifted away from T*
#: once the maps fitted the finite rows (both ways at d = 32 on the benchmark pair, 2^16 rows
#: a side: 11.3 % L2-UVP after 48 000 steps; with 2^18 rows 2.8 %), and 12 000 steps were
#: the default from d = 8 to 32 (1.77, 1.88, 2.00 % at d = 8, 16, 32 through the command
#: line, one seed; 48 000 steps without the jitter: 2.23 % at d = 8, 2.13 % at d = 16). With
#: the jitter 0.1, 48 000 steps left 1.35, 1.62 and 1.68 % (seed 1 at d = 8, 36 000 steps:
#: 1.38 % against 1.76 % for the 12 000-step default; the jitter 0.05 at d = 8: 1.58 %, 0.2:
#: 3.22 %). At d ≤ 4 the fit is limited by compute, not rows (fresh samples at every step did
#: no better), so neither applies there
SEMIDUAL_MID_DIM = 4
#: the fewest steps the automatic semi-dual game runs where its steps follow the training
#: rows (:func:`semidual_steps`). At 8 100 steps (256 passes over ``dense-pair``'s 8 100
#: training rows) ``dense-pair`` left 0.15, 0.55 and 6.89 % L2-UVP at d = 8, 16, 64 against
#: 0.17, 0.62 and 7.43 % after 12 000 steps (the floor before), and the W2 benchmark pair
#: with 9 000 rows a side 3.24 % against 3.41 % at d = 16 (command line, one seed); fewer
#: steps were not measured
SEMIDUAL_MIN_STEPS = 8_000
#: where the steps follow the training rows, at most this many passes over the smaller side's
#: rows (batches of :data:`SEMIDUAL_BATCH`): 48 000 steps for the W2 benchmark pair's
#: 2^16 × 0.9 rows a side, 8 100 for ``dense-pair``'s 8 100 (9 000 rows a side, 10 % held
#: out). On ``dense-pair`` at d = 8 (jitter 0.1) 12 000 steps left
#: 0.16 % L2-UVP, 36 000 0.25 %, 48 000 0.26 % (0.37 % with the jitter 0.05): the longer
#: runs fit the rows
SEMIDUAL_PASSES = 256
#: above this dimension the automatic semi-dual game runs :data:`SEMIDUAL_HIGH_DIM_STEPS`
#: steps (at :data:`SEMIDUAL_ONE_WAY_RATE`): at d = 128 on the benchmark pair they left
#: 12.9 % L2-UVP (the linear map: 63.6 %) in 218 s on a 2-core CPU, where the 48 000 steps
#: of lower dimensions would take about 15 minutes (extrapolated from 7 200 steps in 146 s
#: at rate 0.01; not run)
SEMIDUAL_HIGH_DIM = 64
SEMIDUAL_HIGH_DIM_STEPS = 12_000
#: the automatic semi-dual game's rate where it is played one way (above d =
#: :data:`SEMIDUAL_BIDIRECTIONAL_DIM`), against ``SemiDual.learning_rate`` (0.01) both
#: ways. At d = 128 on the benchmark pair 0.01 ran off within 3 000 steps and 0.003
#: converged. At d = 64 (2^16 rows a side, 48 000 steps, the rows jittered, through the
#: command line, seeds 0, 1, 2) 0.003 left 3.23, 3.08, 3.03 % L2-UVP against 3.46, 3.42,
#: 3.36 % at 0.01 (0.005: 3.39 %; 0.002: 3.15, 3.16 %, seeds 0, 1): the slower game fits
#: the finite rows less. On ``dense-pair`` at d = 64 (9 000 rows a side, not tuned on)
#: 4.14 % against 6.89 %, where the linear map has 6.32 %
SEMIDUAL_ONE_WAY_RATE = 0.003
#: the automatic semi-dual game's rate where its networks are reparametrised
#: (``SemiDual.default_nonnegativity``: up to d = 8, over 12 000 steps or more). On the
#: benchmark pair (2^16 rows a side, 48 000 steps, through the command line): at d = 4
#: 0.02 left 0.38, 0.45, 0.52 % L2-UVP (seeds 0, 1, 2) against 0.44, 0.53, 0.59 % at 0.01
#: (0.005: 0.56 %), 0.03 0.39, 0.45 % (seeds 0, 1); at d = 2 0.03 left 0.08 % against
#: 0.10 at 0.02 and 0.09 at 0.01 (seed 0); at d = 8 (the network reparametrised there
#: since) 0.03 left 1.04, 1.10 % (seeds 0, 1) against 1.09, 1.19 % at 0.02 (0.05: 1.04 %),
#: where the clamped network at 0.01 had 1.37, 1.53 %. With the clamp 0.02 did worse at
#: d = 4 (0.95 against 0.77 %, 12 000 steps), so the rate follows the network's kind
#: (:func:`rate_for_network`)
SEMIDUAL_REPARAMETRISED_RATE = 0.03
#: the automatic semi-dual game's weight decay (``SemiDual.weight_decay``, AdamW on the
#: layers' weights) where it is played one way and a side is a finite set of rows: like the
#: jitter and the lower rate, it keeps the game from fitting them. On the benchmark pair at
#: d = 64 (2^16 rows a side, rate 0.003, the rows jittered, through the command line)
#: 0.01 left 2.78 and 2.95 % L2-UVP (seeds 0, 1) against 3.23 and 3.08 % without it (its
#: mask without the units' sharpnesses: 3.16 %, seed 0); on ``dense-pair`` at d = 64 (not
#: tuned on) 3.79 % against 4.14 % (the linear map: 6.32 %)
SEMIDUAL_WEIGHT_DECAY = 0.01
#: above d = :data:`SEMIDUAL_MID_DIM` each batch's rows are jittered by
#: :data:`SEMIDUAL_JITTER` of their standard deviation (``SemiDual.jitter``) when a side is
#: a finite set of rows: there the fit is limited by them. On the benchmark pair
#: at d = 64 (one seed, on a GPU) 2^16 rows a side left 4.5 % L2-UVP and fresh samples at
#: every step 2.2 %; the jitter 0.1 brought the 2^16 rows to 3.2 % (0.2: 5.9 %). Through the
#: command line on a 2-core CPU: 4.71 → 3.36 % at d = 64, 5.07 → 5.01 % at d = 128 (another
#: draw of the noise: 4.47 %); at d = 64 0.05 left 3.74 %, 0.15 3.67 %. On
#: ``dense-pair`` at d = 64 (9 000 rows a side), which it was not tuned on, 11.4 → 12.9 %
#: after 48 000 steps, both worse than the linear map's 6.3 %; with the steps that follow
#: the rows (:func:`semidual_steps`: 12 000 there) and widths (64, 64), 7.4 %
SEMIDUAL_JITTER = 0.1
#: whose rows the automatic game jitters where it is played both ways (up to d =
#: :data:`SEMIDUAL_BIDIRECTIONAL_DIM`) and the source is a finite set of rows, each
#: coordinate keeping its variance (``SemiDual.jitter_keeps_variance``): the source's (with
#: a source sampled afresh, both sides as drawn, as before). The target's jitter widens the
#: law ψ learns; the source's smooths the map's own inputs. On the benchmark pair (2^16 rows a
#: side, 48 000 steps both ways, one seed, fitted in its own coordinates) at d = 16: both
#: sides 1.61 % L2-UVP, the target's alone 2.22 %, the source's alone 1.50 %, keeping its
#: variance 1.39 % (σ = 0.07: 1.41 %; 0.15: 1.94 %); at d = 8: both sides 1.45 %, the
#: source's alone 1.22 %, keeping its variance 1.24 %.
#: Through the command line (two seeds at d = 8, 16): 1.38 and 1.39 % at d = 16 against
#: 1.62 and 1.65 % for both sides, 1.42 against 1.68 % at d = 32, 1.41 and 1.53 against
#: 1.35 and 1.45 % at d = 8 (the seeds' spread); on ``dense-pair`` 0.17 and 0.62 % at
#: d = 8, 16 against 0.16 and 0.47 %. Played one way (d = 64) it did worse: 4.35 % (both
#: sides keeping their variance 4.00 %) against 3.46 %, so both sides are jittered there,
#: as drawn
SEMIDUAL_JITTER_ROWS = "source"
#: where the automatic game's rows are jittered and it is played both ways (above d =
#: :data:`SEMIDUAL_MID_DIM`, up to :data:`SEMIDUAL_BIDIRECTIONAL_DIM`, a side a finite set
#: of rows, the rule's steps), its networks clamped above d = 8, this many steps follow it
#: in which φ alone descends the semi-dual, its conjugates solved by Newton's method
#: (``SemiDual.finish_steps``; after reparametrised networks
#: :data:`SEMIDUAL_REPARAMETRISED_FINISH_STEPS`): the game, at the rates that carry its
#: networks from the identity, settles where its own loss still descends. On the
#: Wasserstein-2 benchmark pair (2^16 rows a side, through the command line, a 2-core CPU),
#: each conjugate solved afresh by 4 of Newton's steps: d = 8 (reparametrised networks,
#: rate 0.03, 300 steps) 0.72 and 0.86 % L2-UVP (seeds 0, 1) in 327 and 323 s against 0.93
#: and 1.13 % in 265 and 237 s without it (rate 0.01: 0.74 %, 0.003: 0.75 %, 0.1: 0.72 %;
#: the rows whose conjugate Newton's steps had not solved left out, at rate 0.01: 0.90 %);
#: d = 16 (clamped networks, rate :data:`SEMIDUAL_CLAMPED_FINISH_RATE`) 0.82 and 0.87 %
#: (seeds 0, 1) against 1.38 and 1.39 %, 403 and 426 s; d = 32 0.82 % against 1.42 %, 531
#: s. With each target row's conjugate kept from one visit to the next (one Newton's step
#: a visit): d = 16 0.81 % in 320 s, d = 32 0.83 % in 432 s, ``dense-pair`` at d = 16
#: 0.18 % in 81 s. On ``dense-pair`` (9 000
#: rows a side, not tuned on; 8 100 steps, clamped networks) at d = 16 0.17 % against
#: 0.55 % (206 against 68 s), but at d = 8, where the game already ends near its 8 100
#: rows' floor, 0.16 and 0.15 % (seeds 0, 1) against 0.15 and 0.09 %: so up to d = 8 the
#: descent follows only the reparametrised networks' game, which needs 12 000 steps' rows
#: (there ``dense-pair`` with 20 000 rows a side: 0.101 % with 300 steps and without).
#: Played one way (above d = 32) it was not measured
SEMIDUAL_FINISH_STEPS = 300
#: the descent's steps after a game on reparametrised networks (up to d = 8, over 12 000
#: steps or more) when the target is a finite set of rows, where it is cheapest: each
#: row's conjugate kept from one visit to the next (``SemiDualState.conjugates``), a step
#: costs a third of one that solves them afresh (for a target that draws fresh samples,
#: :data:`SEMIDUAL_FINISH_STEPS`). On the Wasserstein-2 benchmark pair at d = 8 (2^16
#: rows a side, through the command line, a 2-core CPU), from the same game (0.93 %
#: L2-UVP): 300, 1 500 and 2 000 steps left 0.729, 0.692 and 0.686 % in 31, 100 and 153 s
#: (300 steps solving each conjugate afresh by 4 of Newton's steps: 0.728 % in 97 s;
#: 1 500: 0.6955 % in 328 s)
SEMIDUAL_REPARAMETRISED_FINISH_STEPS = 2000
#: the descent's rate (``SemiDual.finish_rate``) after a game on clamped networks
#: (``SemiDual.default_nonnegativity``), against 0.03 after one on reparametrised networks:
#: on the benchmark pair at d = 16 the descent at 0.03 ran off (its held-out Sinkhorn
#: divergence from 1.25 to 54; the fit kept the game's map), at 0.003 it left 0.82 % L2-UVP
#: against the game's 1.38 %
SEMIDUAL_CLAMPED_FINISH_RATE = 0.003


def training_rows(problem: Problem) -> int | None:
    """The number of training rows of the smaller side known by a finite set of rows
    (:meth:`Problem.training_sizes <mongeflow.problems.Problem.training_sizes>`: held-out
    rows are not in it), or ``None`` when both sides can be sampled afresh."""
    rows = [n for n in problem.training_sizes() if n is not None]
    return min(rows) if rows else None


def _limiting_rows(problem: Problem) -> int | None:
    """:func:`training_rows` where the semi-dual game is limited by them (above
    d = :data:`SEMIDUAL_MID_DIM`), else ``None``: there its rows are jittered and its steps
    follow them."""
    return training_rows(problem) if problem.dim > SEMIDUAL_MID_DIM else None


def semidual_steps(problem: Problem) -> int:
    """The automatic semi-dual game's steps: 48 000 (:attr:`SemiDual.default_steps
    <mongeflow.schemes.SemiDual.default_steps>`) up to d = :data:`SEMIDUAL_MID_DIM`, where
    the fit is limited by compute; above, as many as :data:`SEMIDUAL_PASSES` passes over the
    training rows (:func:`training_rows`) in batches of :data:`SEMIDUAL_BATCH` (the
    automatic batch; a batch given instead does not change the count), between
    :data:`SEMIDUAL_MIN_STEPS` and 48 000, where the fit is limited by its rows; above
    d = :data:`SEMIDUAL_HIGH_DIM`, :data:`SEMIDUAL_HIGH_DIM_STEPS` at a lower rate."""
    if problem.dim > SEMIDUAL_HIGH_DIM:
        return SEMIDUAL_HIGH_DIM_STEPS
    usual = SemiDual.default_steps
    rows = _limiting_rows(problem)
    if rows is None:
        return usual
    return max(SEMIDUAL_MIN_STEPS, min(usual, SEMIDUAL_PASSES * rows // SEMIDUAL_BATCH))


def _semidual(problem: Problem, steps: int | None) -> Choice:
    """The semi-dual scheme (:class:`~mongeflow.schemes.SemiDual`): bidirectional up to
    d = :data:`SEMIDUAL_BIDIRECTIONAL_DIM`, its rate (0.01;
    :data:`SEMIDUAL_ONE_WAY_RATE` where it is played one way,
    :data:`SEMIDUAL_REPARAMETRISED_RATE` where its networks are reparametrised) decaying to 0 over
    the run (:func:`semidual_steps`: 48 000 steps, fewer above d = :data:`SEMIDUAL_MID_DIM`
    when the training rows are few), each batch's rows jittered by :data:`SEMIDUAL_JITTER`
    of their spread above d = :data:`SEMIDUAL_MID_DIM` when a side is a finite set of rows
    (with fresh samples on both sides there are no rows to fit, only the jitter's bias),
    there, played both ways, φ's descent of the semi-dual after the game
    (:data:`SEMIDUAL_REPARAMETRISED_FINISH_STEPS` steps at 0.03 after reparametrised
    networks, :data:`SEMIDUAL_FINISH_STEPS` at :data:`SEMIDUAL_CLAMPED_FINISH_RATE` after
    clamped ones above d = 8; the rule's steps only),
    and there, played one way, the layers' weights decayed by :data:`SEMIDUAL_WEIGHT_DECAY`,
    batches of :data:`SEMIDUAL_BATCH`, every step run (a game between two networks: its
    held-out figures do not fall steadily, so no early stop), widths
    :meth:`SemiDual.default_widths <mongeflow.schemes.SemiDual.default_widths>`."""
    d = problem.dim
    widths = SemiDual.default_widths(d)
    reasons = [f"widths {widths} for d = {d}"]
    if widths != auto_widths(d):
        reasons[0] += f" (the semi-dual game's up to d = {SemiDual.narrow_dim})"
    high = d > SEMIDUAL_HIGH_DIM
    one_way = d > SEMIDUAL_BIDIRECTIONAL_DIM
    usual = semidual_steps(problem)
    rows = _limiting_rows(problem)
    rule_steps = steps is None
    follows_rows = rows is not None and rule_steps and not high
    steps = int(steps or usual)
    off_rows = {}  # what keeps the game off finite rows: none without them
    if rows is not None:
        off_rows = {"jitter": SEMIDUAL_JITTER}
        if one_way:
            off_rows["weight_decay"] = SEMIDUAL_WEIGHT_DECAY
        source_rows = problem.training_sizes()[0] is not None
        if not one_way and source_rows:
            off_rows.update(jitter_rows=SEMIDUAL_JITTER_ROWS, jitter_keeps_variance=True)
    kind = SemiDual(decay_steps=steps).default_nonnegativity(d)  # the network's
    # the descent after the game: played both ways on jittered rows, its networks
    # reparametrised or above d = 8 (steps given: the game's alone)
    short = kind == "clamp" and d <= SemiDual.reparametrised_dim  # rows for < 12 000 steps
    if rows is not None and not one_way and rule_steps and not short:
        off_rows["finish_steps"] = SEMIDUAL_FINISH_STEPS
        if kind == "clamp":
            off_rows["finish_rate"] = SEMIDUAL_CLAMPED_FINISH_RATE
        elif problem.target.rows is not None:  # the conjugates kept: a step a third the cost
            off_rows["finish_steps"] = SEMIDUAL_REPARAMETRISED_FINISH_STEPS
    rate = SemiDual.learning_rate
    if one_way:
        rate = SEMIDUAL_ONE_WAY_RATE
    elif kind != "clamp":
        rate = SEMIDUAL_REPARAMETRISED_RATE
    scheme = SemiDual(
        learning_rate=rate,
        decay_steps=steps,
        bidirectional=not one_way,
        **off_rows,
    )
    game = "both ways" if scheme.bidirectional else "one way"
    if scheme.jitter:
        rows_moved = (
            "both sides'" if scheme.jitter_rows == "both" else f"the {scheme.jitter_rows}'s"
        )
        kept = " (each coordinate's variance kept)" if scheme.jitter_keeps_variance else ""
        game += f", {rows_moved} rows jittered by {scheme.jitter:g} of their spread{kept}"
    if scheme.weight_decay:
        game += _DECAYED.format(scheme.weight_decay)
    if follows_rows:
        reasons.append(
            f"{usual} steps for {rows} training rows (at most {SEMIDUAL_PASSES} passes over "
            f"them, between {SEMIDUAL_MIN_STEPS} and {SemiDual.default_steps} steps)"
        )
    reasons.append(
        f"semidual, played {game} (d = {d}), rate {scheme.learning_rate:.3g} decaying to 0 "
        f"over {steps} steps, {scheme.map_updates} map update(s) a step, batch "
        f"{SEMIDUAL_BATCH}, every step run" + _network_words(kind)
    )
    if scheme.finish_steps:
        reasons.append(finish_words(scheme))
    return Choice(
        scheme,
        widths,
        steps + scheme.finish_steps,
        tuple(reasons),
        patience=None,
        batch_size=SEMIDUAL_BATCH,
    )


#: how the sentence on the descent after the game opens (:func:`finish_words`)
FINISH_OPENING = "then "


def finish_words(scheme: SemiDual) -> str:
    """The automatic semi-dual fit's sentence on the descent after its game (:func:`_semidual`)."""
    return (
        f"{FINISH_OPENING}{scheme.finish_steps} steps in which φ alone descends the semi-dual on "
        f"{scheme.finish_batches} batches a step, its conjugates solved by Newton's "
        f"method, rate {scheme.finish_rate:g} decaying to 0: the game, on jittered rows, "
        "settles where its own loss can still be descended"
    )


def refinished_steps(choice: Choice, scheme: Scheme) -> int:
    """The rule's steps of ``choice`` for the ``scheme`` it became once settings were given:
    the game's, and the descent after it of ``scheme``'s length (``finish_steps``)."""
    finish = lambda s: getattr(s, "finish_steps", 0)  # noqa: E731
    return choice.steps + finish(scheme) - finish(choice.scheme)


def refinished(reasons: list[str], chosen: Scheme, scheme: Scheme) -> list[str]:
    """``reasons`` of the automatic choice ``chosen`` for the ``scheme`` it became once
    settings were given: the sentence on the descent after the game said for ``scheme``'s
    (or left out when it has none)."""
    if not isinstance(chosen, SemiDual) or not chosen.finish_steps:
        return reasons
    kept = [r for r in reasons if r != finish_words(chosen)]
    return kept + ([finish_words(scheme)] if getattr(scheme, "finish_steps", 0) else [])


def rate_for_network(
    scheme: Scheme, nonnegativity: str | None, chosen_for: str, given: Collection[str] = ()
) -> tuple[Scheme, str | None]:
    """``(scheme, reason)``: the automatic semi-dual game's rates re-chosen for the network it
    trains. :data:`SEMIDUAL_REPARAMETRISED_RATE` suits the reparametrised networks it was
    chosen for (``chosen_for``, the choice's own ``default_nonnegativity``, is not
    ``"clamp"``); a network whose weights are clamped instead (``nonnegativity``
    ``"clamp"``: ``--nonnegativity clamp``, a shorter ``decay_steps``, a clamped network
    given) or a potential given with no :class:`~mongeflow.maps.ICNN` in it (``"none"``)
    gets ``SemiDual.learning_rate`` for the game, and, where a descent follows it
    (``finish_steps``) at ``SemiDual.finish_rate``, :data:`SEMIDUAL_CLAMPED_FINISH_RATE` for
    the descent, with the reason. For a plain network
    φ(x) = ½|x|² + MLP(x), (64, 64), not input-convex, fitted to the Wasserstein-2
    benchmark pair (2^16 rows a side, the automatic settings otherwise, one seed) 0.03 left
    0.91 and 4.63 % L2-UVP at d = 2 and 8, and 0.01 0.18 and 1.93 %.
    Any other scheme or choice, and the scheme's own network (``nonnegativity`` ``None``)
    or the one it was chosen for, come back as they are, with ``None``. A rate named in
    ``given`` (``learning_rate``, ``finish_rate``: the settings given) is kept."""
    if (
        not isinstance(scheme, SemiDual)
        or chosen_for == "clamp"
        or nonnegativity in (None, chosen_for)
    ):
        return scheme, None
    changes, rates = {}, []
    if scheme.learning_rate == SEMIDUAL_REPARAMETRISED_RATE and "learning_rate" not in given:
        changes["learning_rate"] = SemiDual.learning_rate
        rates.append(f"rate {SemiDual.learning_rate:g}, not {SEMIDUAL_REPARAMETRISED_RATE:g}")
    finish_given = "finish_rate" in given
    if scheme.finish_steps and scheme.finish_rate == SemiDual.finish_rate and not finish_given:
        changes["finish_rate"] = SEMIDUAL_CLAMPED_FINISH_RATE
        rates.append(
            f"the descent after the game's rate {SEMIDUAL_CLAMPED_FINISH_RATE:g}, not "
            f"{SemiDual.finish_rate:g}"
        )
    if not changes:
        return scheme, None
    why = (
        "the network's weights are clamped, not reparametrised"
        if nonnegativity == "clamp"
        else "the potential given has no weights kept non-negative by an ICNN's "
        "reparametrisation, the networks the rates were chosen for"
    )
    return dataclasses.replace(scheme, **changes), f"{'; '.join(rates)}: {why}"


def rate_rechosen(
    reasons: Sequence[str], why: str | None, chosen: Scheme, rated: Scheme
) -> list[str]:
    """``reasons`` with the rates re-chosen by :func:`rate_for_network` (``chosen`` became
    ``rated``, for the reason ``why``; ``None``: not re-chosen): the game's sentence quotes
    the rate it is played at, the descent's (:func:`finish_words`) its own, and ``why``
    follows."""
    if why is None:
        return list(reasons)

    def rechosen(reason: str) -> str:
        name = "finish_rate" if reason.startswith(FINISH_OPENING) else "learning_rate"
        old, new = getattr(chosen, name), getattr(rated, name)
        return reason.replace(f"rate {old:g} decaying", f"rate {new:g} decaying")

    return [rechosen(r) for r in reasons] + [why]


def configure_named(
    name: str, problem: Problem, divergence: Divergence, steps: int | None = None
) -> Choice:
    """The registered scheme ``name`` with the rules of :func:`choose` applied to every
    setting that has one, so that a scheme named without settings works at its defaults:

    - ``adam``: the automatic fit itself on a loss (rate :func:`auto_learning_rate`,
      decaying over the run, :func:`auto_batch_size`);
    - ``explicit``: on a velocity (the drift), the automatic fit itself (τ from
      :func:`auto_drift_tau` decaying to 0 over :data:`DRIFT_STEPS` steps, every step run,
      :data:`DRIFT_INNER_STEPS` inner Adam steps with a decaying rate); on a loss, its
      registered τ decaying to 0 over the run and an inner rate decaying within each step;
    - ``implicit``: an inner Adam rate decaying within each step;
    - ``euclidean``: its rate decaying to 0 over the run;
    - ``natural``: its registered settings (its step is a line search already);
    - ``semidual``: the automatic fit's own (:func:`_semidual`: played both ways up to
      d = :data:`SEMIDUAL_BIDIRECTIONAL_DIM`, its rate decaying to 0 over the run, batches
      of :data:`SEMIDUAL_BATCH`, every step run).

    The paper's constant settings are those of the registered values
    (:data:`~mongeflow.schemes.SCHEMES`, ``mf.Explicit()`` and so on).
    """
    from mongeflow.schemes import SCHEMES, get_scheme

    if name not in SCHEMES:
        raise ValueError(unknown("scheme", name, SCHEMES))
    if name == "semidual":
        return _semidual(problem, steps)
    d = problem.dim
    widths = auto_widths(d)
    reasons = [f"widths {widths} for d = {d}"]
    if name == "explicit" and not divergence.loss_is_value:
        return choose(problem, divergence, steps)  # the automatic fit itself
    if name == "adam":  # on a loss, or on a velocity's surrogate loss
        return _adam(problem, divergence, steps, reasons)
    registered = SCHEMES[name]
    steps = int(steps or registered.default_steps)
    if name == "explicit":
        scheme = get_scheme(name, decay_steps=steps, inner_decay=True)
        reasons.append(
            f"explicit, τ = {scheme.tau:.3g} decaying to 0 over {steps} steps, inner rate "
            "decaying within each step"
        )
    elif name == "implicit" and isinstance(registered.inner, AdamInner):
        scheme = get_scheme(name, inner_decay=True)
        reasons.append("implicit, inner Adam rate decaying within each step")
    elif name == "euclidean":
        scheme = get_scheme(name, decay_steps=steps)
        reasons.append(f"euclidean, rate decaying to 0 over {steps} steps")
    else:
        scheme = registered
        reasons.append(f"{name} at its registered settings")
    return Choice(scheme, widths, steps, tuple(reasons))


@dataclasses.dataclass(frozen=True)
class Configuration:
    """Everything a fit runs with, decided once, and why (``reasons``, one line each).

    Attributes:
        scheme, divergence: what moves θ and what it descends.
        steps: the outer steps (a cap when ``patience`` stops seeds early).
        batch_size: the mini-batch n.
        patience: history records without a new kept map before a seed stops, or ``None``.
        short: the steps asked for are fewer than both the scheme's default
            (``usual_steps``) and :data:`~mongeflow.loop.MIN_STEPS` (the fit runs them all,
            and says so).
    """

    scheme: Scheme
    divergence: Divergence
    steps: int
    batch_size: int
    patience: int | None
    reasons: tuple[str, ...] = ()
    short: bool = False
    #: the steps the scheme runs by default (for the message of a short fit)
    usual_steps: int | None = None


def configure(
    problem: Problem,
    scheme: Scheme | str | None = None,
    divergence: Divergence | str | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    patience: int | None | str = "auto",
    nonnegativity: str | None = None,
    decays: bool | None = None,
    given: bool = False,
) -> Configuration:
    """The complete configuration of a fit of ``problem``: a value given is used as given;
    a registered name gets the rules of :func:`configure_named` /
    :func:`configure_divergence`; ``None`` (and ``patience="auto"``) the automatic choice
    (:func:`choose_divergence`, :func:`choose`). ``nonnegativity``: that of the network
    given (:class:`~mongeflow.maps.ICNN`), ``None`` for the scheme's own: a clamped network
    where the chosen rate is the reparametrised networks' gets ``SemiDual.learning_rate``
    (:func:`rate_for_network`). ``decays``: whether weight decay reaches any weight of the
    network given (:func:`~mongeflow.maps.base.decays_any`), ``None`` for the scheme's own:
    where it reaches none, the chosen decay's reason says so. ``given``: whether the fit
    trains a potential given rather than the default network; then the reasons leave out
    the default network's widths, units and weights.

    Raises:
        ValueError: a setting out of its range, or a divergence the problem cannot serve.
    """
    reasons = []
    automatic = divergence is None
    if divergence is None:
        divergence = choose_divergence(problem, scheme)
        how = "V" if problem.target.has_potential else "samples"
        reasons.append(f"the {divergence.name} divergence: the target is known by {how}")
        if divergence.name == "energy":
            reasons.append(
                "the energy distance gives the held-out figures only: the semidual scheme "
                "descends W2's semi-dual itself"
            )
    elif isinstance(divergence, str):
        divergence = configure_divergence(divergence, problem)
    divergence.check(problem)
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    auto_patience, auto_batch = AUTO_PATIENCE, AUTO_BATCH
    if scheme is None or isinstance(scheme, str):
        usual = choose(problem, divergence, None, scheme, automatic).steps
        choice = choose(problem, divergence, steps, scheme, automatic)
        scheme, chosen_steps, auto_patience = choice.scheme, choice.steps, choice.patience
        auto_batch = choice.batch_size
        reasons.extend(choice.reasons)
        chosen_for = scheme.default_nonnegativity(problem.dim)
        rated, why = rate_for_network(scheme, nonnegativity, chosen_for)
        reasons = rate_rechosen(reasons, why, scheme, rated)
        scheme = rated
        if decays is False and getattr(scheme, "weight_decay", 0.0):
            reasons = [_undecayed(r, scheme.weight_decay) for r in reasons]
        if given:
            reasons = _on_given(reasons)
    else:
        usual, chosen_steps = scheme.default_steps, steps
        if scheme.name == "semidual":  # a game: every step run, its batch (_semidual)
            auto_patience, auto_batch = None, SEMIDUAL_BATCH
            if steps is None and scheme.finish_steps:  # the game's steps, then the descent's
                chosen_steps = scheme.decay_steps + scheme.finish_steps
    if scheme.needs_target_samples and not problem.target.can_sample:
        raise ValueError(
            f"the {scheme.name} scheme needs samples of the target, which "
            f"{type(problem.target).__name__} cannot give"
        )
    final_steps = int(scheme.default_steps if chosen_steps is None else chosen_steps)
    if patience == "auto":
        patience = auto_patience
    elif patience is not None and (isinstance(patience, str) or patience < 0):
        raise ValueError(f"patience must be a non-negative int, None or 'auto', got {patience!r}")
    return Configuration(
        scheme=scheme,
        divergence=divergence,
        steps=final_steps,
        batch_size=checked_batch_size(problem, batch_size, auto_batch),
        patience=patience,
        reasons=tuple(reasons),
        short=steps is not None and steps < min(usual, MIN_STEPS),
        usual_steps=int(usual),
    )


def _network_words(kind: str) -> str:
    """The automatic semi-dual game's words on the default network it trains, whose weights
    are kept non-negative by ``kind`` (:func:`_semidual`)."""
    words = f", each unit's sharpness learnt ({SemiDual.default_activation})"
    if kind != "clamp":
        words += (
            f", the weights kept non-negative by a {kind} "
            f"reparametrisation (up to d = {SemiDual.reparametrised_dim}, over "
            f"{SemiDual.reparametrised_steps} steps or more)"
        )
    return words


def _on_given(reasons: list[str]) -> list[str]:
    """``reasons`` for a fit of a potential given: without the default network's widths
    and the words on its units and weights, which do not describe the potential given."""
    kept = [r for r in reasons if not r.startswith("widths ")]
    for kind in ("softplus", "clamp"):  # the longer words first
        words = _network_words(kind)
        kept = [r.replace(words, ", the potential given trained as given") for r in kept]
    return kept


def _undecayed(reason: str, weight_decay: float) -> str:
    """``reason`` with its sentence on the layers' weight decay (:func:`_semidual`) saying
    that the decay reaches no weight of the potential given."""
    return reason.replace(
        _DECAYED.format(weight_decay),
        f", weight decay {weight_decay:g} (AdamW), which reaches no weight of the potential "
        "given (its decayed() marks none)",
    )


#: the automatic semi-dual game's sentence on its weight decay (:func:`_semidual`)
_DECAYED = ", the layers' weights decayed by {:g} (AdamW)"


def asks_for_drift(problem: Problem, given: Mapping[str, object]) -> bool:
    """Whether the settings ``given`` (flat scheme and divergence settings, no scheme or
    divergence named) ask for the constrained drifting model: on a target known by samples,
    one of them belongs to the drift or the explicit scheme and not to the automatic
    semi-dual fit (:class:`~mongeflow.schemes.SemiDual` and the energy distance)."""
    if problem.target.has_potential:
        return False
    drift = set(flat(Drift())) | set(flat(Explicit()))
    semidual = set(flat(SemiDual())) | set(flat(DIVERGENCES["energy"]))
    return any(k in drift and k not in semidual for k in given)


def _named(scheme: Scheme | str | None) -> str | None:
    return scheme if isinstance(scheme, str) or scheme is None else scheme.name


def default_batch_size(problem: Problem, preferred: int = AUTO_BATCH) -> int:
    """``preferred``, or the training rows of a side known by samples when fewer."""
    return min([preferred] + [k for k in problem.training_sizes() if k is not None])


def checked_batch_size(problem: Problem, batch_size: int | None, default: int) -> int:
    """``batch_size``, checked against the training rows, or :func:`default_batch_size`."""
    if batch_size is None:
        return default_batch_size(problem, default)
    n, m = problem.training_sizes()
    if batch_size < 2:
        raise ValueError(f"batch_size must be ≥ 2, got {batch_size}")
    for rows, side in ((n, "data"), (m, "target")):
        if rows is not None and batch_size > rows:
            raise ValueError(
                f"batch_size {batch_size} is larger than the {rows} training samples of the "
                f"{side} (those left after the validation split); use at most {rows}"
            )
    return int(batch_size)
