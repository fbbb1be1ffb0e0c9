"""The scikit-learn estimator :class:`mongeflow.MongeTransport`: parameters, the one- and
two-sample fits, pandas in and out, Pipelines, scores, bad input and scikit-learn's own
estimator checks. Small fits (a few steps, small networks) keep it fast."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mongeflow as mf
from mongeflow.estimator import MongeTransport, _configured

#: a few steps of a small network: what these tests need of a fit (not a converged map)
SMALL = dict(max_steps=5, widths=(8,))

pytestmark = pytest.mark.filterwarnings(
    # a 5-step fit warns that it is short and may not beat the linear map: expected here
    "ignore::mongeflow.fit.FitWarning"
)


def skewed(n, d=2, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.gamma(2.0, 1.0, size=(n, d))
    return 3.0 + z @ np.triu(np.ones((d, d))) * 0.5


#: Adam, its rate set by name (the automatic fit's is 0.1)
ONE = dict(scheme="adam", scheme_settings={"learning_rate": 0.05}, **SMALL)


@pytest.fixture(scope="module")
def one_sample():
    """:data:`ONE` fitted on 300 rows, to N(0, I)."""
    x = skewed(300)
    est = MongeTransport(**ONE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mf.FitWarning)
        est.fit(x)
    return est, x


def two_domains():
    """240 source rows and 200 target rows, in other units."""
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(240, 2)) * np.array([1.0, 3.0]) + np.array([10.0, -5.0])
    xt = rng.normal(size=(200, 2)) * 0.5 + np.array([-2.0, 1.0])
    return xs, xt


#: Adam on the energy distance: a close map in 20 steps (the automatic drift needs more)
TWO = dict(scheme="adam", divergence="energy", max_steps=20, widths=(8,))


@pytest.fixture(scope="module")
def two_sample():
    """A Pipeline (scaler, then the map) fitted on :func:`two_domains`."""
    xs, xt = two_domains()
    pipe = make_pipeline(StandardScaler(), MongeTransport(**TWO))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mf.FitWarning)
        pipe.fit(xs, xt)
    return pipe, xs, xt


# --- parameters ------------------------------------------------------------------------
def test_params_are_stored_as_given_and_clone_works():
    target = mf.PotentialTarget(lambda y: 0.5 * (y @ y), 2)
    settings = {"learning_rate": 0.05}
    est = MongeTransport(target=target, scheme="adam", scheme_settings=settings, widths=(8, 8))
    params = est.get_params()
    assert params["target"] is target and params["scheme_settings"] is settings
    assert params["widths"] == (8, 8) and params["max_steps"] is None
    assert est.set_params(max_steps=7, seed=3) is est
    assert (est.max_steps, est.seed) == (7, 3)
    twin = clone(est)
    assert twin is not est and twin.get_params()["max_steps"] == 7
    assert twin.scheme_settings == settings and twin.scheme_settings is not settings
    assert not hasattr(twin, "map_")
    assert mf.MongeTransport is MongeTransport  # the package's lazy export


@pytest.mark.slow  # 8 s cold on 2 cores; `pytest -m slow` runs it
def test_scheme_settings_are_applied_by_name_and_checked(one_sample):
    est, x = one_sample
    scheme = est.result_.scheme
    assert scheme.name == "adam" and scheme.learning_rate == 0.05
    assert scheme.decay_steps == 5  # the automatic rules for the rest: decay over the run
    # the command line's spelling, with dashes, works too
    assert _configured(mf.Adam(), {"learning-rate": 0.02}, "scheme").learning_rate == 0.02
    assert _configured(mf.KL(), None, "divergence") == mf.KL()
    with pytest.raises(ValueError, match="has no setting tau; its settings:"):
        MongeTransport(scheme="adam", scheme_settings={"tau": 0.1}, **SMALL).fit(x)
    with pytest.raises(ValueError, match="^learning_rate must be in"):
        MongeTransport(scheme="adam", scheme_settings={"learning_rate": -1.0}, **SMALL).fit(x)
    with pytest.raises(ValueError, match="divergence 'kl' has no setting foo"):
        MongeTransport(divergence_settings={"foo": 1}, **SMALL).fit(x)
    with pytest.raises(ValueError, match="unknown scheme 'adma'"):
        MongeTransport(scheme="adma", **SMALL).fit(x)


# --- one sample --------------------------------------------------------------------------
def test_one_sample_fit_maps_to_the_gaussian_and_inverts(one_sample):
    est, x = one_sample
    assert est.n_features_in_ == 2 and not hasattr(est, "feature_names_in_")
    assert isinstance(est.map_, mf.MongeMap) and isinstance(est.result_, mf.FitResult)
    y = est.transform(x)
    assert y.shape == x.shape and y.dtype == np.float64 and isinstance(y, np.ndarray)
    # T#data is near N(0, I) (the linear map alone gets the two moments right)
    assert np.abs(y.mean(0)).max() < 0.3
    assert np.abs(np.cov(y.T) - np.eye(2)).max() < 0.4
    back = est.inverse_transform(y)
    np.testing.assert_allclose(back, x, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(est.fit_transform(x), y, rtol=1e-5, atol=1e-5)  # deterministic
    assert est.transform(x.astype(np.float32)).dtype == np.float32
    samples = est.sample(500, random_state=0)
    assert samples.shape == (500, 2) and np.isfinite(samples).all()
    np.testing.assert_array_equal(samples, est.sample(500, random_state=0))
    assert not np.array_equal(samples, est.sample(500, random_state=1))


def test_score_is_minus_the_objective_and_score_samples_the_log_density(one_sample):
    est, x = one_sample
    logp = est.score_samples(x[:50])
    assert logp.shape == (50,) and np.isfinite(logp).all()
    np.testing.assert_allclose(logp, np.asarray(est.map_.log_density(x[:50])), rtol=1e-6)
    # score = mean log-likelihood + log Z, for N(0, I): log Z = (d/2) log 2π
    log_z = np.log(2 * np.pi)
    assert est.score(x[:50]) == pytest.approx(logp.mean() + log_z, rel=1e-4, abs=1e-4)
    # a 1-D y with one value per row is taken for labels (a supervised Pipeline): ignored
    assert est.score(x[:50], np.zeros(50)) == pytest.approx(est.score(x[:50]))
    # with target samples, minus the energy distance of T(X) to them
    far = np.random.default_rng(0).normal(size=(100, 2)) + 5.0
    near = np.random.default_rng(1).normal(size=(100, 2))
    assert est.score(x, far) < est.score(x, near) <= 0.0


# --- two samples -------------------------------------------------------------------------
def test_two_sample_fit_in_a_pipeline_lands_in_the_target_units(two_sample):
    pipe, xs, xt = two_sample
    scaler, est = pipe[0], pipe[-1]
    # the Pipeline passed y = xt to every step's fit, but only X through the transforms:
    # the scaler was fitted on xs alone, and the map goes from scaled xs to xt as given
    np.testing.assert_allclose(scaler.mean_, xs.mean(0))
    assert isinstance(est.map_.target, mf.EmpiricalTarget)
    y = pipe.transform(xs)
    np.testing.assert_allclose(y.mean(0), xt.mean(0), atol=0.25)
    np.testing.assert_allclose(y.std(0), xt.std(0), rtol=0.15)
    np.testing.assert_allclose(pipe.inverse_transform(y), xs, rtol=1e-3, atol=1e-3)
    # the score: minus the energy distance to target samples, which are needed
    assert -0.5 < pipe.score(xs, xt) <= 0.0
    assert pipe.score(xs, xt) > pipe.score(xs, xt + 3.0)
    with pytest.raises(ValueError, match="score needs target samples"):
        est.score(scaler.transform(xs))
    with pytest.raises(ValueError, match="score_samples is not defined.*known by samples"):
        est.score_samples(scaler.transform(xs))
    # samples: T⁻¹ of the stored target rows (the 180 training rows), as `mongeflow sample`
    s = est.sample(50, random_state=0)
    assert s.shape == (50, 2)
    stored = np.asarray(est.map_.target_to_data_units(est.map_.target.data))
    assert stored.shape == (180, 2)  # 10 % of the 200 held out
    np.testing.assert_allclose(est.transform(s), stored[_rows_of(est, 50, 0)], atol=1e-3)


def _rows_of(est, n, seed):
    """The stored target rows `sample(n, random_state=seed)` draws (as the CLI does)."""
    k = est.map_.target.data.shape[0]
    rng = np.random.default_rng(seed)
    return rng.permutation(k)[:n]


# --- pandas ------------------------------------------------------------------------------
def test_pandas_in_pandas_out_with_the_column_names():
    pd = pytest.importorskip("pandas")
    cols = ["length", "width"]
    df = pd.DataFrame(skewed(300), columns=cols)
    est = MongeTransport(**ONE).set_output(transform="pandas").fit(df)  # as one_sample's
    assert list(est.feature_names_in_) == cols and est.n_features_in_ == 2
    out = est.transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == cols
    assert list(out.index) == list(df.index)
    np.testing.assert_array_equal(est.get_feature_names_out(), cols)
    assert isinstance(est.inverse_transform(out), np.ndarray)  # as scikit-learn's own
    with pytest.raises(ValueError, match="feature names"):
        est.transform(df.rename(columns={"width": "height"}))
    # in a Pipeline, pandas in, pandas out
    pipe = make_pipeline(StandardScaler(), MongeTransport(**ONE)).set_output(transform="pandas")
    out = pipe.fit(df).transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == cols
    # target samples as a DataFrame: the same columns, in the same order
    xs, xt = (pd.DataFrame(a, columns=cols) for a in two_domains())
    two = MongeTransport(**TWO).set_output(transform="pandas")
    with pytest.raises(ValueError, match=r"not those of X.*y\[X.columns\]"):
        two.fit(xs, xt[cols[::-1]])
    out = two.fit(xs, xt).transform(xs)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == cols
    np.testing.assert_allclose(out.mean(0), xt.mean(0), atol=0.25)


# --- bad input ---------------------------------------------------------------------------
def test_bad_input_is_refused_with_clear_errors(one_sample):
    est, x = one_sample
    with pytest.raises(NotFittedError):
        MongeTransport().transform(x)
    with pytest.raises(ValueError, match="X has 3 features, but MongeTransport is expecting 2"):
        est.transform(np.ones((4, 3)))
    with pytest.raises(ValueError, match="Expected 2D array"):
        est.transform(x[0])
    with pytest.raises(ValueError, match="NaN"):
        est.transform(np.array([[np.nan, 1.0]]))
    fresh = MongeTransport(**SMALL)
    bad = x.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        fresh.fit(bad)
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        fresh.fit(x[:1])
    with pytest.raises(ValueError, match="y have 3 columns but X has 2"):
        fresh.fit(x, np.ones((10, 3)))
    with pytest.raises(ValueError, match="y is 1-D with 7 values: target samples must be 2-D"):
        fresh.fit(x, np.ones(7))
    with pytest.raises(ValueError, match="give one of the two"):
        MongeTransport(target="gaussian:m.npy,c.npy", **SMALL).fit(x, x + 1.0)
    with pytest.raises(ValueError, match="unknown target 'gausian'"):
        MongeTransport(target="gausian", **SMALL).fit(x)
    with pytest.raises(ValueError, match="validation fraction must be in"):
        MongeTransport(validation=0.7, **SMALL).fit(x)
    with pytest.raises(ValueError, match="n_samples must be an int ≥ 1"):
        est.sample(0)


# --- scikit-learn's checks ---------------------------------------------------------------
#: the configuration checked: 2 steps of a network of width 4 (the checks test the API, not
#: the map)
CHECKED = MongeTransport(max_steps=2, widths=(4,))

#: checks expected to fail, and why: none. (scikit-learn 1.9 passes every check that applies;
#: check_array_api_input skips itself unless SCIPY_ARRAY_API=1: the estimator computes in JAX
#: and takes NumPy input.)
EXPECTED_FAILED_CHECKS: dict[str, str] = {}

#: the checks of the default run: the estimator's contract (parameters, clone, tags, repr,
#: refusals of bad or unfitted input) and one core fit (fit returns self). The other fitting
#: checks (check_transformer_general, check_fit_score_takes_y and
#: check_n_features_in_after_fitting, 6-8 s each) and every check that fits on data of new
#: shapes (a new shape compiles its programs anew: 5-15 s each on 2 cores) run with
#: ``pytest -m slow`` (all pass there); what they add is tested in this file on the usual
#: shapes (float32 in and out, NaN/inf refused, fit_transform = transform, clone).
DEFAULT_CHECKS = {
    "check_estimator_cloneable",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_estimator_repr",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_mixin_order",
    "check_estimators_unfitted",
    "check_transformers_unfitted",
    "check_estimators_empty_data_messages",
    "check_complex_data",
    "check_estimator_sparse_tag",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_fit1d",
    "check_estimators_fit_returns_self",
}


def _check_id(check) -> str:
    name = getattr(check, "func", check).__name__
    keywords = getattr(check, "keywords", None)
    if keywords:
        name += "(" + ", ".join(f"{k}={v}" for k, v in keywords.items()) + ")"
    return name


def _sklearn_checks():
    try:
        from sklearn.utils.estimator_checks import estimator_checks_generator
    except ImportError:  # scikit-learn < 1.6
        return [pytest.param(None, None, marks=pytest.mark.skip(reason="scikit-learn < 1.6"))]
    params = []
    for item in estimator_checks_generator(
        CHECKED, expected_failed_checks=EXPECTED_FAILED_CHECKS, mark="xfail"
    ):
        values, marks = (item.values, list(item.marks)) if hasattr(item, "values") else (item, [])
        check = values[1]
        if getattr(check, "func", check).__name__ not in DEFAULT_CHECKS:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(*values, marks=marks, id=_check_id(check)))
    return params


@pytest.mark.parametrize("estimator, check", _sklearn_checks())
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mf.FitWarning)
        check(estimator)
