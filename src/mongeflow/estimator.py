"""A scikit-learn estimator: a Monge map fitted to data, used as a transformer.

:class:`MongeTransport` wraps :func:`mongeflow.io.data_problem` and :func:`mongeflow.fit`
behind the scikit-learn estimator API (Buitinck et al. 2013, *API design for machine
learning software: experiences from the scikit-learn project*): constructor arguments are
stored as given, ``fit`` sets attributes ending in ``_``, ``transform`` applies the map, and
the estimator can be cloned, put in a :class:`~sklearn.pipeline.Pipeline` and searched
over. It plays the part of POT's ``ot.da`` transport classes (Flamary et al. 2021, *POT:
Python Optimal Transport*, JMLR 22(78)) for domain adaptation, with a learnt Brenier map
T = ∇φ (φ convex) that can be applied to new points, inverted and, for a target with a
density, used as a density model.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the method it replaced

    def validate_data(estimator, X, **kwargs):
        return estimator._validate_data(X, **kwargs)


__all__ = ["MongeTransport"]

#: what ``transform`` and the other methods accept and return (a float32 input stays float32)
_DTYPES = [np.float64, np.float32]


class MongeTransport(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """The Monge (Brenier) map T = ∇φ, φ convex, from the data to a target, as a
    scikit-learn transformer.

    Two fits:

    - **one sample**, ``fit(X)``: T pushes the rows of X onto the distribution ``target``
      (by default N(0, I): a normalising map, whose inverse samples a model of the data
      and whose Jacobian gives its density);
    - **two samples**, ``fit(X, y)`` with ``y`` the target samples Xt ``[m, d]`` (as many
      columns as X, any number of rows): T pushes the rows of X onto those of Xt, both sides
      standardised with one common scale, or one per feature with ``per_feature`` (see
      :func:`mongeflow.io.data_problem`). This is the domain-adaptation setting of POT's
      ``ot.da`` classes (Flamary et al. 2021): ``transform`` carries source points into the
      target domain, ``inverse_transform`` back. The map is a function that applies to new
      points (a neural Brenier map, or the linear one when that does better on held-out
      rows: ``fallback``), not a coupling of the given rows.

    The samples go to the second argument, named ``y`` as scikit-learn requires
    (``fit(Xs, Xt)`` or ``fit(Xs, y=Xt)``). A 1-D ``y`` with one value per row of X is
    taken for class labels, as a :class:`~sklearn.pipeline.Pipeline` passes them to every
    step of a supervised pipeline, and is ignored: the fit is then a one-sample fit to
    ``target``. Target samples are therefore always 2-D, a column ``[m, 1]`` for d = 1.

    In a Pipeline, ``Pipeline.fit(X, y)`` passes y unchanged to the ``fit`` (or
    ``fit_transform``) of *every* step, while only X goes through the steps' transforms:
    in ``make_pipeline(StandardScaler(), MongeTransport()).fit(Xs, Xt)`` the scaler is
    fitted on Xs alone (it ignores y) and the map goes from the scaled Xs to Xt in Xt's own
    units, so the pipeline's ``transform`` takes raw source rows to the target's units. A
    step before this one that uses y (a supervised feature selector) would receive Xt, and
    one that checks that y has a row per row of X refuses Xt with m ≠ n. Cross-validation
    splits X and y by the same row indices, so it needs m = n for a two-sample fit.

    Every argument is stored as given (scikit-learn's convention) and read by :meth:`fit`.

    Args:
        target: where the one-sample fit maps to: ``"gaussian"`` (the standard normal), a
            specification of :func:`mongeflow.io.parse_target` (``"gaussian:MEAN.npy,COV.npy"``,
            ``"FILE.py:NAME"`` for γ ∝ exp(−V), ``"samples:FILE"``) or a
            :class:`~mongeflow.problems.Target` (a :class:`~mongeflow.problems.PotentialTarget`,
            a :class:`~mongeflow.problems.Gaussian`, an
            :class:`~mongeflow.problems.EmpiricalTarget` of samples in the data's units).
            A two-sample fit uses its ``y`` instead, and refuses a ``target`` other than
            ``"gaussian"`` beside it (which of the two was meant?).
        scheme: ``"auto"`` (the library's choice, :func:`mongeflow.auto.choose`), a
            registered scheme name (``"adam"``, ``"explicit"``, ``"implicit"``,
            ``"euclidean"``, ``"natural"``, ``"semidual"``, with the automatic rules for its
            settings, :func:`mongeflow.auto.configure_named`) or a
            :class:`~mongeflow.schemes.Scheme`.
        divergence: ``"auto"`` (:func:`mongeflow.auto.choose_divergence`: the KL for a
            target with a potential; for one known by samples the energy distance, with
            the semi-dual scheme, or the drift when a paper scheme is named), a registered
            name (``"kl"``, ``"energy"``, ``"mmd"``, ``"sinkhorn"``, ``"drift"``) or a
            :class:`~mongeflow.divergences.Divergence`.
        max_steps: the most outer steps (``fit``'s ``steps``: a cap, as the fit stops
            early once the held-out figure stops improving); ``None``: the scheme's number.
        batch_size: the mini-batch; ``None``: the library's (at most the training rows).
        seed: the seed of the validation split and of the training.
        standardize: fit in standardised coordinates (one overall scale, which keeps T a
            Brenier map in the data's units; see :func:`mongeflow.io.data_problem`).
        per_feature: with ``standardize``, one scale per feature (the map is then optimal
            for the rescaled cost Σ_j (x_j − y_j)²/s_j², see ``data_problem``).
        validation: the fraction of rows (of both samples) held out to pick the map and
            stop early, in [0, 0.5).
        widths: the hidden widths of the potential's network (a tuple of ints); ``None``:
            the scheme's (:meth:`Scheme.default_widths
            <mongeflow.schemes.base.Scheme.default_widths>`).
        strong_convexity: a floor on the potential's curvature (0: none), see
            :func:`mongeflow.maps.default_potential`.
        activation: the network's activation, ``"softplus"`` or ``"beta-softplus"`` (each
            unit's sharpness learnt, :class:`mongeflow.maps.ICNN`); ``"auto"``: the scheme's
            own (beta-softplus for the semi-dual scheme, else softplus).
        scheme_settings: flat settings of the scheme, by their command-line names with
            ``_`` (``{"learning_rate": 0.05}``, ``{"tau": 0.1, "inner_steps": 50}``),
            applied to the scheme chosen or named (:func:`mongeflow.settings.configure`,
            which refuses a setting the scheme lacks or a number outside its range).
        divergence_settings: flat settings of the divergence, likewise
            (``{"temperatures": (0.02, 0.05)}`` for the drift).
        fallback: keep the linear (Bures) map when the trained map does worse on the
            held-out figure (see :func:`mongeflow.fit`).
        progress: show a progress bar while fitting.

    Attributes:
        map_: the fitted :class:`~mongeflow.maps.MongeMap` (in the data's units; save it
            with :func:`mongeflow.save`).
        result_: the :class:`~mongeflow.fit.FitResult` (history, metrics, the comparison
            with the linear map, ``linear_kept``).
        n_features_in_: the number of features d.
        feature_names_in_: the column names of a DataFrame X (only when X had names).

    Example:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).gamma(2.0, size=(200, 2))
        >>> est = MongeTransport(max_steps=5, widths=(8,), progress=False)
        >>> est.fit(x).transform(x[:3]).shape
        (3, 2)
    """

    def __init__(
        self,
        target: Any = "gaussian",
        scheme: Any = "auto",
        divergence: Any = "auto",
        max_steps: int | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        standardize: bool = True,
        per_feature: bool = False,
        validation: float = 0.1,
        widths: tuple[int, ...] | None = None,
        strong_convexity: float = 0.0,
        activation: str = "auto",
        scheme_settings: Mapping[str, Any] | None = None,
        divergence_settings: Mapping[str, Any] | None = None,
        fallback: bool = True,
        progress: bool = False,
    ):
        self.target = target
        self.scheme = scheme
        self.divergence = divergence
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.seed = seed
        self.standardize = standardize
        self.per_feature = per_feature
        self.validation = validation
        self.widths = widths
        self.strong_convexity = strong_convexity
        self.activation = activation
        self.scheme_settings = scheme_settings
        self.divergence_settings = divergence_settings
        self.fallback = fallback
        self.progress = progress

    # --- fitting ----------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit the map: to ``target`` (one sample), or to the target samples ``y``.

        Args:
            X: the source samples ``[n, d]`` (an array or a DataFrame, whose column names
                are remembered: ``feature_names_in_``), n ≥ 2, finite.
            y: ``None``; or the target samples Xt ``[m, d]`` (array or DataFrame, the same
                columns as X, in the same order) for a two-sample fit; or class labels
                (1-D, one per row of X: ignored, see the class's description).

        Returns:
            self, fitted.

        Raises:
            ValueError: bad data (NaN/inf, fewer than 2 rows, not 2-D), target samples with
                another number of columns (or other column names) than X, a ``target``
                beside target samples, an unknown scheme or divergence, a setting it lacks
                or a value outside its range, or bad fit arguments
                (:class:`~mongeflow.io.InputError` is a ValueError).
        """
        from mongeflow.auto import (
            AUTO_BATCH,
            asks_for_drift,
            choose,
            choose_divergence,
            configure_divergence,
            rate_for_network,
            refinished_steps,
        )
        from mongeflow.fit import default_batch_size, fit
        from mongeflow.io import data_problem
        from mongeflow.maps.default import default_potential
        from mongeflow.problems import EmpiricalTarget
        from mongeflow.progress import Progress

        X = validate_data(self, X, dtype=_DTYPES, ensure_min_samples=2)
        samples = self._target_samples(X, y)
        target = self.target
        if samples is not None:
            if not (isinstance(target, str) and target == "gaussian"):
                raise ValueError(
                    f"fit got target samples (y, {samples.shape[0]} rows) and target="
                    f"{_short(target)}: give one of the two (a two-sample fit maps X to the "
                    "rows of y; leave target at its default 'gaussian')"
                )
            target = EmpiricalTarget(samples)
        problem = data_problem(
            X,
            target,
            standardize=bool(self.standardize),
            validation=float(self.validation),
            seed=int(self.seed),
            per_feature=bool(self.per_feature),
        )

        divergence = self.divergence
        auto_divergence = isinstance(divergence, str) and divergence == "auto"
        named_scheme = self.scheme
        if isinstance(named_scheme, str) and named_scheme == "auto":
            named_scheme = None
        given = {**(self.scheme_settings or {}), **(self.divergence_settings or {})}
        if auto_divergence and named_scheme is None and asks_for_drift(problem, given):
            named_scheme = "explicit"  # a drift setting given: the constrained drifting model
        automatic = auto_divergence and named_scheme is None
        if isinstance(divergence, str):
            divergence = (
                choose_divergence(problem, named_scheme)
                if auto_divergence
                else configure_divergence(divergence, problem)
            )
        divergence = _configured(divergence, self.divergence_settings, "divergence")

        scheme, steps, patience, batch = self.scheme, self.max_steps, "auto", AUTO_BATCH
        chosen = isinstance(scheme, str)
        if chosen:
            named = named_scheme if isinstance(named_scheme, str) else None
            choice = choose(problem, divergence, steps, named, automatic)
            scheme, steps, patience = choice.scheme, choice.steps, choice.patience
            batch = choice.batch_size
        scheme = _configured(scheme, self.scheme_settings, "scheme")
        if chosen and self.max_steps is None:  # the rule's: the game's and the descent's given
            steps = refinished_steps(choice, scheme)
        if chosen:  # the automatic rates, for the network trained (a rate given is kept)
            scheme, _ = rate_for_network(
                scheme,
                scheme.default_nonnegativity(problem.dim),
                choice.scheme.default_nonnegativity(problem.dim),
                _named(self.scheme_settings or {}),
            )
        batch_size = (
            default_batch_size(problem, batch) if self.batch_size is None else self.batch_size
        )
        widths = (
            scheme.default_widths(problem.dim)
            if self.widths is None
            else tuple(int(w) for w in self.widths)
        )
        activation = scheme.default_activation if self.activation == "auto" else self.activation
        potential = default_potential(
            problem.dim,
            widths,
            float(self.strong_convexity),
            activation,
            scheme.default_nonnegativity(problem.dim),
        )
        result = fit(
            problem,
            scheme,
            divergence,
            potential,
            steps=steps,
            batch_size=batch_size,
            seed=int(self.seed),
            callbacks=[Progress(True)] if self.progress else [],
            patience=patience,
            standardize=bool(self.standardize),
            per_feature=bool(self.per_feature),
            fallback=bool(self.fallback),
        )
        self.result_ = result
        self.map_ = result.map()
        return self

    def _target_samples(self, X: np.ndarray, y) -> np.ndarray | None:
        """The target samples of a two-sample fit, checked, or ``None`` (no y, or labels)."""
        if y is None:
            return None
        shape = np.shape(np.asarray(y))
        if len(shape) == 1:
            if shape[0] == X.shape[0]:
                return None  # class labels, as a supervised Pipeline passes them: ignored
            raise ValueError(
                f"y is 1-D with {shape[0]} values: target samples must be 2-D [m, d] with "
                f"d = {X.shape[1]} columns as X (a column [m, 1] when d = 1); a 1-D y is "
                f"taken for class labels only when it has one value per row of X ({X.shape[0]})"
            )
        rows = check_array(y, dtype=_DTYPES, ensure_min_samples=2, input_name="y")
        if rows.shape[1] != X.shape[1]:
            raise ValueError(
                f"the target samples y have {rows.shape[1]} columns but X has {X.shape[1]}: "
                "a two-sample fit needs y [m, d] with the same d features as X"
            )
        names_in = getattr(self, "feature_names_in_", None)
        names_y = getattr(y, "columns", None)
        if names_in is not None and names_y is not None:
            names_y = np.asarray([str(c) for c in names_y], dtype=object)
            if not np.array_equal(names_y, names_in):
                raise ValueError(
                    f"the columns of the target samples y ({list(names_y)}) are not those of "
                    f"X ({list(names_in)}): the map pairs the columns by position, so give y "
                    "with X's columns in X's order (y[X.columns])"
                )
        return rows

    # --- applying ---------------------------------------------------------------------
    def _check(self, X) -> np.ndarray:
        check_is_fitted(self, "map_")
        return validate_data(self, X, dtype=_DTYPES, reset=False)

    def transform(self, X):
        """T(X): the rows of X carried by the map (into the target's units).

        Args:
            X: ``[n, d]`` points in the source's units (array or DataFrame with the
                columns of the fit).

        Returns:
            ``[n, d]``, of X's float dtype (a DataFrame after ``set_output(transform=
            "pandas")``, with the column names of :meth:`get_feature_names_out`).

        Raises:
            ValueError: X has another number of features (or other names) than the fit,
                or NaN/inf.
            sklearn.exceptions.NotFittedError: before ``fit``.
        """
        X = self._check(X)
        return _out(self.map_.transport(X), X.dtype, "transform")

    def inverse_transform(self, X):
        """T⁻¹(X): the points whose image is X (a Newton solve of the convex conjugate,
        :meth:`mongeflow.maps.MongeMap.inverse`).

        Args:
            X: ``[n, d]`` points in the target's units.

        Returns:
            ``[n, d]``, of X's float dtype (a NumPy array, as scikit-learn's
            ``set_output`` leaves inverse transforms alone). A point outside the range of T
            has no preimage: check ``transform`` of the result where accuracy matters.
        """
        X = self._check(X)
        return _out(self.map_.inverse(X), X.dtype, "inverse_transform")

    def sample(self, n_samples: int = 1, random_state=None) -> np.ndarray:
        """``n_samples`` points of the model of the source: T⁻¹(y) for y drawn from the
        target.

        For a target known by samples (a two-sample fit, ``samples:FILE``), y are the target's
        stored training rows, drawn without replacement up to their number K (beyond it every
        row once and the rest with replacement, so at most K distinct points), as
        ``mongeflow sample`` does; otherwise fresh draws of γ
        (:meth:`mongeflow.maps.MongeMap.sample`).

        Args:
            n_samples: how many, ≥ 1.
            random_state: ``None`` (NumPy's global generator), an int (the same int as
                ``mongeflow sample --seed`` gives the same points), or a
                :class:`numpy.random.RandomState` / :class:`numpy.random.Generator`.

        Returns:
            ``[n_samples, d]`` float64.

        Raises:
            ValueError: ``n_samples`` < 1, or a target that cannot be sampled (a V without a
                sampler).
        """
        import jax

        from mongeflow.problems import EmpiricalTarget

        check_is_fitted(self, "map_")
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be an int ≥ 1, got {n_samples!r}")
        n = int(n_samples)
        seed = _seed(random_state)
        m = self.map_
        if isinstance(m.target, EmpiricalTarget):
            from mongeflow.mapping import sample_stored_rows

            points, _ = sample_stored_rows(m, n, seed)
        else:
            if m.target is None or not m.target.can_sample:
                raise ValueError(
                    f"sample draws y from the target and returns T⁻¹(y), but the target "
                    f"({type(m.target).__name__}) cannot be sampled: give a target with a "
                    "sampler (PotentialTarget(V, d, sampler=...)) or a Gaussian"
                )
            points = m.sample(jax.random.key(seed), n)
        return _out(points, np.float64, "sample")

    def score_samples(self, X) -> np.ndarray:
        """log ρ0(x) = log γ(T(x)) + log det DT(x), per row: the log-density of the source
        model (T⁻¹)#γ (:meth:`mongeflow.maps.MongeMap.log_density`), in the data's units.

        Args:
            X: ``[n, d]``.

        Returns:
            ``[n]`` float64 (−inf where DT(x) is not positive definite).

        Raises:
            ValueError: the target has no normalised density: it is known by samples (a
                two-sample fit), or it is a V whose log Z is unknown.
        """
        X = self._check(X)
        try:
            logp = self.map_.log_density(X)
        except ValueError as err:
            raise ValueError(f"score_samples is not defined for this fit: {err}") from None
        return np.asarray(logp, dtype=np.float64)

    def score(self, X, y=None) -> float:
        """How well T carries X to the target: higher is better (scikit-learn's convention,
        so that a grid search maximises it).

        - Target samples Xt given (``y``, 2-D): −ED(T(X), Xt), minus the energy distance
          between the mapped rows and Xt (:func:`mongeflow.metrics.energy_distance`, the
          V-statistic, in the target's units). 0 is a perfect match; for finite samples it
          stays below 0 by about the two samples' noise.
        - Else, for a target with a potential V (γ ∝ exp(−V), a Gaussian): −F(X), minus the
          objective F = mean_i V(T(x_i)) − mean_i log det DT(x_i) that the fit minimises
          (the KL from T#μ0 to γ up to a constant), on the given rows, with DT in the
          data's units. It equals the mean log-likelihood of X under the source model plus
          log Z: for a target whose log Z is known, ``score(X) = mean(score_samples(X)) +
          log Z``. Give held-out rows: on the training rows it is optimistic.
        - Else (a target known by samples, and no ``y``): an error.

        A 1-D ``y`` with one value per row (class labels from a supervised Pipeline) is
        ignored, as in :meth:`fit`.

        Args:
            X: ``[n, d]`` source points.
            y: ``None``, or the target samples Xt ``[m, d]``.

        Returns:
            A float.

        Raises:
            ValueError: no figure applies (see above), or bad input.
        """
        import jax
        import jax.numpy as jnp

        from mongeflow.metrics import energy_distance

        X = self._check(X)
        samples = self._target_samples(X, y)
        m = self.map_
        if samples is not None:
            mapped = m.transport(X)
            rows = jnp.asarray(samples, mapped.dtype)
            return -float(energy_distance(mapped, rows))
        if m.target is not None and m.target.has_potential:
            v = jax.vmap(m.target.potential)(m.transport(X))
            objective = jnp.mean(v) - jnp.mean(m.log_det_jacobian(X))
            return -float(objective)
        raise ValueError(
            f"score needs target samples for this fit: its target ({type(m.target).__name__}) "
            "is known by samples only and has no potential V to score the map with; call "
            "score(X, Xt) with held-out target samples Xt [m, d] (minus their energy distance "
            "to T(X))"
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def _configured(value, settings: Mapping[str, Any] | None, kind: str):
    """``value`` (a scheme or divergence) with the flat ``settings`` applied (``-`` in a
    name read as ``_``, as on the command line)."""
    from mongeflow.settings import configure

    if not settings:
        return value
    if not isinstance(settings, Mapping):
        raise ValueError(
            f"{kind}_settings must be a dict of settings (name -> value), got "
            f"{type(settings).__name__}"
        )
    name = getattr(value, "name", "") or type(value).__name__
    return configure(value, _named(settings), f"{kind} {name!r}")


def _named(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` by their names as the package spells them (``-`` read as ``_``)."""
    return {str(k).replace("-", "_"): v for k, v in settings.items()}


def _seed(random_state) -> int:
    """An int seed: ``random_state`` itself when it is one, else drawn from it."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be ≥ 0, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    return int(check_random_state(random_state).randint(2**31 - 1))


def _out(values, dtype, what: str) -> np.ndarray:
    """``values`` as a NumPy array of ``dtype``; a warning when some rows are not finite."""
    out = np.asarray(values, dtype=dtype)
    bad = ~np.all(np.isfinite(out), axis=-1)
    if np.any(bad):
        warnings.warn(
            f"{what}: {int(np.sum(bad))} of {out.shape[0]} output rows are not finite (the "
            f"first: row {int(np.flatnonzero(bad)[0])}): the map overflows there; those "
            "inputs may lie far outside the data it was fitted on",
            UserWarning,
            stacklevel=3,
        )
    return out


def _short(value) -> str:
    text = repr(value) if isinstance(value, str) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."
