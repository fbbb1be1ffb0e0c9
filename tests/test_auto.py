"""The settings chosen automatically, and a small hard case where they beat the linear map."""

import json

import equinox as eqx
import jax
import numpy as np
import pytest

import mongeflow as mf
from mongeflow.auto import AUTO_BATCH, AUTO_STEPS, choose
from mongeflow.divergences import KL
from mongeflow.maps.default import auto_widths


def test_widths_grow_with_the_dimension():
    assert auto_widths(2) == auto_widths(32) == (64, 64)
    assert auto_widths(64) == (128, 128)


def test_a_loss_gets_adam_with_a_rate_decaying_over_the_run():
    c = choose(mf.get_problem("dense-potential", dim=8), KL())
    assert c.scheme.name == "adam" and c.steps == AUTO_STEPS
    assert c.scheme.decay_steps == AUTO_STEPS and c.scheme.learning_rate == 0.1
    assert choose(mf.get_problem("dense-potential", dim=64), KL()).scheme.learning_rate == 0.025
    assert c.widths == (64, 64)
    c = choose(mf.get_problem("dense-potential", dim=8), KL(), steps=300)
    assert c.steps == c.scheme.decay_steps == 300


@pytest.mark.slow
def test_above_d_32_the_batch_halves_and_the_steps_double():
    """The same number of samples in twice the steps: at d = 64 the fit is short of steps,
    not of samples per gradient."""
    assert choose(mf.get_problem("gaussian", dim=32), KL()).batch_size == AUTO_BATCH
    c = choose(mf.get_problem("gaussian", dim=33), KL())
    assert c.batch_size == AUTO_BATCH // 2 and c.steps == c.scheme.decay_steps == 2 * AUTO_STEPS
    assert choose(mf.get_problem("gaussian", dim=33), KL(), steps=300).steps == 300
    res = mf.fit("gaussian", dim=40, steps=2, final_eval_size=0, eval_size=64)
    assert res.batch_size == AUTO_BATCH // 2


@pytest.mark.slow
def test_a_given_batch_or_a_named_scheme_overrides_the_batch_rule():
    res = mf.fit("gaussian", dim=40, steps=2, batch_size=32, final_eval_size=0, eval_size=64)
    assert res.batch_size == 32
    # a named scheme without a batch rule of its own (adam has the automatic fit's) keeps 256
    named = mf.fit("gaussian", "euclidean", dim=40, steps=2, final_eval_size=0)
    assert named.batch_size == AUTO_BATCH
    assert mf.fit("gaussian", "adam", dim=40, steps=2, final_eval_size=0).batch_size == 128


def test_the_command_line_takes_the_automatic_batch(tmp_path):
    """The run's settings as the command line builds and stores them (no fit: the fit's own
    use of the rule is checked above, and a d = 40 compilation is slow)."""
    from mongeflow import cli, runs

    out = tmp_path / "run"
    argv = ["fit", "--problem", "gaussian", "--dim", "40", "--steps", "2", "--out", str(out)]
    args = vars(cli._parser().parse_args(argv))
    settings = runs.fit_settings(args, out, resume=False, overwrite=False)
    runs.build(settings)
    runs.start(settings, out, resume=False)
    assert json.loads((out / "run.json").read_text())["settings"]["batch_size"] == AUTO_BATCH // 2


def test_a_velocity_only_divergence_gets_the_explicit_scheme():
    surrogate = KL(gradient="entropic")  # its loss has the right gradient, not F's value
    assert choose(mf.get_problem("gaussian", dim=2), surrogate).scheme.name == "explicit"


@pytest.mark.slow  # 16 s cold on 2 cores; `pytest -m slow` runs it
def test_default_fit_beats_the_linear_map_on_a_hard_problem():
    """dense-potential at d = 4 (the linear map: 6.6 % L2-UVP); the default fit, capped at 400
    steps, must be below 0.6 × the linear map's figure on the same held-out pairs."""
    res = mf.fit("dense-potential", dim=4, steps=400, final_eval_size=5000)
    assert res.scheme.name == "adam"
    ours, linear = res.metrics["l2_uvp"][0], res.metrics["linear_l2_uvp"][0]
    assert linear > 5.0
    assert ours < 0.6 * linear, (ours, linear)
    assert np.isfinite(res.metrics["objective"][0])
    assert res.metrics["objective"][0] < res.metrics["linear_objective"][0]


def test_a_velocity_only_divergence_gets_the_explicit_scheme_with_a_decaying_step():
    from mongeflow.auto import DRIFT_INNER_STEPS, DRIFT_STEPS, auto_drift_tau, choose

    problem = mf.get_problem("gaussian-pair", dim=3, n=500)
    c = choose(problem, mf.Drift())
    assert c.scheme.name == "explicit" and c.steps == DRIFT_STEPS and c.patience is None
    assert c.scheme.tau == 0.3 and c.scheme.decay_steps == c.steps
    # each step's regression: more inner steps than the paper's 100, their rate decaying
    assert c.scheme.inner.name == "adam" and c.scheme.inner.decay
    assert c.scheme.inner.steps == DRIFT_INNER_STEPS > mf.Explicit().inner.steps
    # τ_k: τ₀ at the start, half of it midway, 0 at the end (a cosine)
    taus = [float(c.scheme.step_size(k)) for k in (0, c.steps // 2, c.steps)]
    assert taus == pytest.approx([c.scheme.tau, c.scheme.tau / 2, 0.0], abs=1e-6)
    # τ₀ ∝ 1/√d (the normalised drift's length grows like √d), capped at 0.3
    assert auto_drift_tau(1) == 0.3 and auto_drift_tau(16) == pytest.approx(0.15)
    assert mf.Explicit().step_size(5) == mf.Explicit().tau  # no decay by default
    # a divergence with a loss gets Adam, on a sample target too
    assert choose(problem, mf.EnergyDistance()).scheme.name == "adam"


@pytest.mark.slow  # 6 s cold on 2 cores; `pytest -m slow` runs it
def test_a_named_scheme_on_a_sample_target_gets_sharper_drift_temperatures(tmp_path, monkeypatch):
    from mongeflow import cli, runs
    from mongeflow.auto import (
        MIXED_DRIFT_TEMPERATURES,
        SHARP_DRIFT_TEMPERATURES,
        choose_divergence,
    )

    authors = mf.Drift().temperatures
    assert authors == (0.02, 0.05, 0.2) != SHARP_DRIFT_TEMPERATURES
    assert SHARP_DRIFT_TEMPERATURES == (0.01, 0.02, 0.05)
    assert MIXED_DRIFT_TEMPERATURES == (0.01, 0.05, 0.2)
    sharp, mixed = SHARP_DRIFT_TEMPERATURES, MIXED_DRIFT_TEMPERATURES
    assert len({sharp, mixed, authors}) == 3
    for d, expected in ((2, sharp), (8, sharp), (9, mixed), (16, mixed), (17, authors)):
        problem = mf.get_problem("gaussian-pair", dim=d, n=60)
        # the drift is the divergence of a named paper scheme on a sample target ...
        assert choose_divergence(problem, "explicit") == mf.Drift(temperatures=expected), d
        # ... and with no scheme named (or the semi-dual one), the energy distance
        assert choose_divergence(problem).name == "energy"
        assert choose_divergence(problem, "semidual").name == "energy"
    # a target with a potential keeps the KL
    assert choose_divergence(mf.get_problem("gaussian", dim=2)).name == "kl"
    assert choose_divergence(mf.get_problem("gaussian", dim=2), "semidual").name == "kl"
    # the command line records the chosen temperatures, and a given one wins
    monkeypatch.setenv("MONGEFLOW_NO_CACHE", "1")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 3)))
    np.save(tmp_path / "y.npy", 1.0 + 0.5 * rng.normal(size=(300, 3)))
    parser = cli._parser()
    base = ["fit", "--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"]
    # the drift: named by its scheme, or asked for by one of its settings (no scheme named)
    for extra, expected in (
        (["--scheme", "explicit"], sharp),
        (["--temperatures", "0.1,0.3"], (0.1, 0.3)),
    ):
        out = tmp_path / f"run{len(extra)}"
        args = parser.parse_args([*base, *extra, "--out", str(out)])
        settings = runs.fit_settings(vars(args), out, resume=False, overwrite=False)
        _, _, divergence, _ = runs.build(settings)
        assert divergence == mf.Drift(temperatures=expected)
        assert settings["divergence"] == "drift" and settings["temperatures"] == expected


def test_a_sample_target_gets_the_semidual_scheme_by_default(tmp_path, monkeypatch):
    """With nothing named, a target known by samples gets the semi-dual scheme (the energy
    distance for the held-out figures); on the command line and in the estimator too."""
    from mongeflow import cli, runs
    from mongeflow.auto import SEMIDUAL_BATCH

    problem = mf.get_problem("gaussian-pair", dim=3, n=4000)
    config = mf.auto.configure(problem)
    assert config.scheme == mf.SemiDual(
        learning_rate=mf.auto.SEMIDUAL_REPARAMETRISED_RATE,  # d = 3: reparametrised networks
        decay_steps=mf.SemiDual.default_steps,
        bidirectional=True,
    )
    assert config.divergence.name == "energy" and config.patience is None
    assert config.batch_size == SEMIDUAL_BATCH
    # a divergence named without a scheme keeps its own rules
    assert mf.auto.configure(problem, None, "drift").scheme.name == "explicit"
    assert mf.auto.configure(problem, None, "energy").scheme.name == "adam"
    # a target with a potential keeps Adam on the KL
    assert mf.auto.configure(mf.get_problem("gaussian", dim=2)).scheme.name == "adam"
    monkeypatch.setenv("MONGEFLOW_NO_CACHE", "1")
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(200, 3)))
    np.save(tmp_path / "y.npy", 1.0 + 0.5 * rng.normal(size=(200, 3)))
    target = f"samples:{tmp_path / 'y.npy'}"
    out = tmp_path / "r"
    args = cli._parser().parse_args(
        ["fit", "--source", str(tmp_path / "x.npy"), "--target", target, "--out", str(out)]
    )
    settings = runs.fit_settings(vars(args), tmp_path / "r", resume=False, overwrite=False)
    _, scheme, divergence, _ = runs.build(settings)
    assert scheme.name == "semidual" and divergence.name == "energy"
    # 180 training rows, fewer than SEMIDUAL_BATCH: the batch is all of them
    assert SEMIDUAL_BATCH > 180 and settings["batch_size"] == 180


def test_the_one_way_semidual_game_runs_slower_with_its_weights_decayed():
    """Played both ways (up to d = 32) the automatic semi-dual game keeps the scheme's rate
    and no weight decay; played one way on finite rows it runs at SEMIDUAL_ONE_WAY_RATE with
    the weights decayed by SEMIDUAL_WEIGHT_DECAY, and its record of why says so."""
    from mongeflow.auto import (
        SEMIDUAL_BIDIRECTIONAL_DIM,
        SEMIDUAL_ONE_WAY_RATE,
        SEMIDUAL_WEIGHT_DECAY,
    )

    assert SEMIDUAL_ONE_WAY_RATE < mf.SemiDual.learning_rate
    for d in (SEMIDUAL_BIDIRECTIONAL_DIM, SEMIDUAL_BIDIRECTIONAL_DIM + 1, 64, 128):
        config = mf.auto.configure(mf.get_problem("gaussian-pair", dim=d, n=2000))
        one_way = d > SEMIDUAL_BIDIRECTIONAL_DIM
        rate = SEMIDUAL_ONE_WAY_RATE if one_way else mf.SemiDual.learning_rate
        assert config.scheme.bidirectional != one_way and config.scheme.learning_rate == rate
        assert any(f"rate {rate:.3g} decaying to 0" in r for r in config.reasons)
        decayed = any("weights decayed by" in r for r in config.reasons)
        assert config.scheme.weight_decay == (SEMIDUAL_WEIGHT_DECAY if one_way else 0.0)
        assert decayed == one_way


def test_a_decay_that_reaches_no_weight_of_the_potential_given_is_said_to():
    """The automatic one-way game decays the layers' weights; a potential given whose
    ``decayed()`` marks none (an affine map) plays the same game, and the record of why
    says the decay reaches none of its weights instead of saying they decayed."""
    problem = mf.get_problem("gaussian-pair", dim=40, n=2000)
    said = "reaches no weight of the potential given"
    for decays in (None, True):
        reasons = mf.auto.configure(problem, decays=decays).reasons
        assert any("weights decayed by" in r for r in reasons)
        assert not any(said in r for r in reasons)
    undecayed = mf.auto.configure(problem, decays=False)
    assert any(said in r for r in undecayed.reasons)
    assert not any("weights decayed by" in r for r in undecayed.reasons)
    assert undecayed.scheme.weight_decay == mf.auto.SEMIDUAL_WEIGHT_DECAY
    with pytest.warns(mf.FitWarning):  # 3 steps: a short fit, and said so
        res = mf.fit(problem, potential=mf.maps.AffinePotential(40), steps=3)
    assert any(said in r for r in res.chosen)


def test_the_record_of_a_fit_of_a_potential_given_does_not_describe_the_default_network():
    """The automatic choice names the default network's widths, units and weights; a fit
    that trains a potential given (here an affine map) keeps the choice of the game and
    leaves those words out, since they do not describe what was trained."""
    problem = mf.get_problem("gaussian-pair", dim=3, n=500)
    network = ("widths (", "sharpness learnt", "reparametrisation")
    default = mf.auto.configure(problem).reasons
    assert all(any(w in r for r in default) for w in network)
    for reasons in (
        mf.auto.configure(problem, given=True).reasons,
        mf.fit(problem, potential=mf.maps.AffinePotential(3), steps=3).chosen,
    ):
        assert not any(w in r for r in reasons for w in network)
        assert any("semidual, played both ways" in r and "potential given" in r for r in reasons)


@pytest.mark.slow  # 10 s cold on 2 cores; `pytest -m slow` runs it
def test_a_drift_setting_alone_asks_for_the_constrained_drifting_model():
    """On a sample target with nothing named, a setting only the drift or the explicit
    scheme has selects them (the semi-dual scheme has none of them); in the estimator too."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(120, 2)), 1.0 + rng.normal(size=(120, 2))
    est = mf.MongeTransport(max_steps=2, progress=False, scheme_settings={"tau": 0.05})
    est.fit(X, Y)
    assert est.result_.scheme.name == "explicit" and est.result_.scheme.tau == 0.05
    assert est.result_.divergence.name == "drift"


def test_the_record_of_the_choice_names_a_setting_given_over_it(tmp_path):
    """`chosen` in run.json says why each automatic setting was picked; a flag that
    overrides one (--no-bidirectional at d = 3, where the game is played both ways) is named
    after it, so the record does not read as if the automatic value ran."""
    from mongeflow import cli, runs

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 3)))
    np.save(tmp_path / "y.npy", 1.0 + 0.5 * rng.normal(size=(300, 3)))
    parser = cli._parser()
    base = ["fit", "--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"]
    chosen = {}
    for extra in ([], ["--no-bidirectional"]):
        out = tmp_path / f"run{len(extra)}"
        args = parser.parse_args([*base, *extra, "--out", str(out)])
        settings = runs.fit_settings(vars(args), out, resume=False, overwrite=False)
        _, scheme, _, _ = runs.build(settings)
        chosen[bool(extra)] = (scheme.bidirectional, settings["chosen"])
    (auto_ways, auto_why), (given_ways, given_why) = chosen[False], chosen[True]
    assert auto_ways and not given_ways
    assert not any(r.startswith("given") for r in auto_why)
    assert given_why[-1] == "given, over the choice above: bidirectional False"


def test_the_activation_follows_the_scheme_and_a_given_one_is_named(tmp_path):
    """The semi-dual fit's network learns each unit's sharpness (beta-softplus: run.json's
    settings, its `chosen` record and the built network say so); a target with a potential
    keeps softplus; --activation softplus over the semi-dual choice is built and named."""
    from mongeflow import cli, runs

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 3)))
    np.save(tmp_path / "y.npy", 1.0 + 0.5 * rng.normal(size=(300, 3)))
    parser = cli._parser()
    samples = [
        "fit",
        "--source",
        str(tmp_path / "x.npy"),
        "--target",
        f"samples:{tmp_path / 'y.npy'}",
    ]
    built = {}
    for name, argv in {
        "samples": samples,
        "given": [*samples, "--activation", "softplus"],
        "gaussian": ["fit", "--source", str(tmp_path / "x.npy"), "--target", "gaussian"],
    }.items():
        out = tmp_path / name
        args = parser.parse_args([*argv, "--out", str(out)])
        settings = runs.fit_settings(vars(args), out, resume=False, overwrite=False)
        _, _, _, make = runs.build(settings)
        built[name] = (
            settings["activation"],
            make(jax.random.key(0)).activation,
            settings["chosen"],
        )
    assert built["samples"][:2] == ("beta-softplus", "beta-softplus")
    assert "sharpness learnt (beta-softplus)" in built["samples"][2][-1]
    assert built["given"][:2] == ("softplus", "softplus")
    assert built["given"][2][-1] == "given, over the choice above: activation softplus"
    assert built["gaussian"][:2] == ("softplus", "softplus")
    assert not any("given" in r for r in built["gaussian"][2])
    with pytest.raises(SystemExit):
        parser.parse_args([*samples, "--activation", "relu", "--out", str(tmp_path / "bad")])
    from mongeflow.maps.icnn import ACTIVATIONS

    fit_parser = parser._subparsers._group_actions[0].choices["fit"]
    flag = next(a for a in fit_parser._actions if a.dest == "activation")
    assert tuple(flag.choices) == ACTIVATIONS


def _command_line_scheme(tmp_path, dim, *flags):
    """``built(out, resume=False)``: the scheme ``runs.build`` makes for ``mongeflow fit`` on
    300 rows a side of dimension ``dim`` written under ``tmp_path`` (``flags`` added), the
    run started (its run.json written) when it is new."""
    from mongeflow import cli, runs

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, dim)))
    np.save(tmp_path / "y.npy", 1.0 + 0.5 * rng.normal(size=(300, dim)))
    given = ["--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"]

    def built(out, resume=False):
        args = cli._parser().parse_args(["fit", *given, *flags, "--out", str(out)])
        settings = runs.fit_settings(vars(args), out, resume=resume, overwrite=False)
        scheme = runs.build(settings)[1]  # records the settings it chose
        if not resume:
            runs.start(settings, out, resume=False)
        return scheme

    return built


def test_a_run_saved_before_the_jitter_named_its_rows_resumes_as_it_ran(tmp_path):
    """A command-line run at d = 8 saved when the jitter moved both sides' rows (its record
    has ``jitter`` but no ``jitter_rows`` or ``jitter_keeps_variance``) resumes so; a new
    run there jitters the source's rows alone, each coordinate keeping its variance."""
    import json

    built = _command_line_scheme(tmp_path, 8)

    def scheme(out, resume=False):
        s = built(out, resume)
        return s.jitter, s.jitter_rows, s.jitter_keeps_variance

    assert scheme(tmp_path / "new") == (0.1, "source", True)
    scheme(tmp_path / "old")
    record = json.loads((tmp_path / "old" / "run.json").read_text())
    assert record["settings"]["jitter_rows"] == "source"
    for key in ("jitter_rows", "jitter_keeps_variance"):
        del record["settings"][key]
    (tmp_path / "old" / "run.json").write_text(json.dumps(record))
    assert scheme(tmp_path / "old", resume=True) == (0.1, "both", False)


def test_a_run_saved_before_the_weight_decay_resumes_without_it(tmp_path):
    """A command-line run played one way (d = 33) saved before ``weight_decay`` existed (its
    record has no such setting) resumes without it, the optimiser state it saved being
    Adam's; a new run there decays the weights."""
    import json

    from mongeflow.auto import SEMIDUAL_WEIGHT_DECAY

    built = _command_line_scheme(tmp_path, 33)

    def decay(out, resume=False):
        return built(out, resume).weight_decay

    assert decay(tmp_path / "old") == SEMIDUAL_WEIGHT_DECAY
    record = json.loads((tmp_path / "old" / "run.json").read_text())
    del record["settings"]["weight_decay"]
    (tmp_path / "old" / "run.json").write_text(json.dumps(record))
    assert decay(tmp_path / "old", resume=True) == 0.0


def test_the_reparametrised_games_rate_is_not_given_to_a_clamped_or_plain_network(
    tmp_path, monkeypatch
):
    """At d = 4 the automatic game's rate is 0.03 for its reparametrised network; a network
    whose weights are clamped (asked for on the command line, by a shorter decay for the
    estimator, or given to ``mf.fit``), or a potential given that is not input-convex, gets
    0.01 with the reason recorded; a rate given is kept (and listed as given), and a run
    resumes at the rate it was saved with."""
    import importlib
    import json

    from mongeflow.auto import SEMIDUAL_REPARAMETRISED_RATE, configure, rate_for_network
    from mongeflow.maps.default import default_potential

    assert SEMIDUAL_REPARAMETRISED_RATE == 0.03 and mf.SemiDual.learning_rate == 0.01
    why = "rate 0.01, not 0.03: the network's weights are clamped, not reparametrised"

    def rate(*flags, out=None):
        resume = out is not None
        out = out or tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        scheme = _command_line_scheme(tmp_path, 4, *flags)(out, resume)
        chosen = json.loads((out / "run.json").read_text())["settings"]["chosen"]
        played[:] = [c for c in chosen if c.startswith("semidual")]  # the game's sentence
        return scheme.learning_rate, [c for c in chosen if "clamped" in c or "given" in c]

    played = []

    assert rate() == (0.03, [])
    assert "rate 0.03 decaying" in played[0]
    assert rate("--nonnegativity", "clamp") == (
        0.01,
        [why, "given, over the choice above: nonnegativity clamp"],
    )
    # the game's sentence quotes the rate it is played at, not the one it was chosen for
    assert "rate 0.01 decaying" in played[0] and "rate 0.03 decaying" not in played[0]
    assert rate("--nonnegativity", "clamp", "--learning-rate", "0.03") == (
        0.03,
        [why, "given, over the choice above: learning_rate 0.03, nonnegativity clamp"],
    )
    assert rate("--decay-steps", "5000")[0] == 0.01  # the clamp is the rule for a short decay
    # resumed (every stored setting given): the rate it was saved with
    clamped_run = tmp_path / "clamped"
    _command_line_scheme(tmp_path, 4, "--nonnegativity", "clamp")(clamped_run)
    assert rate("--nonnegativity", "clamp", out=clamped_run)[0] == 0.01
    record = json.loads((clamped_run / "run.json").read_text())
    record["settings"]["learning_rate"] = 0.02  # as saved by an earlier version
    (clamped_run / "run.json").write_text(json.dumps(record))
    assert rate("--nonnegativity", "clamp", out=clamped_run)[0] == 0.02

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 4)), 1.0 + 0.5 * rng.normal(size=(300, 4))
    problem = mf.data_problem(x, mf.EmpiricalTarget(y))
    assert configure(problem).scheme.learning_rate == 0.03
    clamped = default_potential(4, (8, 8), nonnegativity="clamp")
    clamped_choice = configure(problem, nonnegativity="clamp")
    assert clamped_choice.scheme.learning_rate == 0.01
    assert any("rate 0.01 decaying" in r for r in clamped_choice.reasons)
    assert not any("rate 0.03 decaying" in r for r in clamped_choice.reasons)
    given = configure(problem, mf.SemiDual(learning_rate=0.03), nonnegativity="clamp")
    assert given.scheme.learning_rate == 0.03  # a scheme given is used as given

    class Trained(Exception):
        """The scheme a fit was about to run (the fit stopped before its first step)."""

    class Peek(mf.Callback):
        def on_start(self, run, state):
            raise Trained(run.scheme)

    with pytest.raises(Trained) as ran:  # the 48 000 steps of the automatic game not run
        mf.fit(problem, potential=clamped, callbacks=[Peek()])
    assert ran.value.args[0].learning_rate == 0.01

    class Wrapped(mf.Potential):  # a user's potential around a clamped network
        inner: mf.Potential

        def __call__(self, x):
            return self.inner(x)

    for kind, expected in (("clamp", 0.01), ("softplus", 0.03)):
        inner = default_potential(4, (8, 8), nonnegativity=kind)(jax.random.key(0))
        with pytest.raises(Trained) as ran:
            mf.fit(problem, potential=Wrapped(inner), callbacks=[Peek()])
        assert ran.value.args[0].learning_rate == expected, kind

    class Plain(mf.Potential):  # not input-convex: ½|x|² + a plain network
        net: eqx.nn.MLP

        def __call__(self, x):
            return 0.5 * x @ x + self.net(x)[0]

    def plain(key):
        return Plain(eqx.nn.MLP(4, 1, 8, 2, activation=jax.nn.softplus, key=key))

    for potential in (plain, plain(jax.random.key(1)), mf.AffinePotential(4)):
        with pytest.raises(Trained) as ran:
            mf.fit(problem, potential=potential, callbacks=[Peek()])
        assert ran.value.args[0].learning_rate == 0.01, potential

    def stop(problem, scheme, *args, **kwargs):
        raise Trained(scheme)

    monkeypatch.setattr(importlib.import_module("mongeflow.fit"), "fit", stop)
    for settings, learnt in (
        ({}, 0.03),
        ({"decay-steps": 5000}, 0.01),
        ({"learning_rate": 0.03, "decay_steps": 5000}, 0.03),
    ):
        with pytest.raises(Trained) as ran:
            mf.MongeTransport(scheme_settings=settings).fit(x, y)
        assert ran.value.args[0].learning_rate == learnt
    short = mf.SemiDual(learning_rate=0.03, decay_steps=5000)  # a scheme given: as given
    with pytest.raises(Trained) as ran:
        mf.MongeTransport(scheme=short).fit(x, y)
    assert ran.value.args[0] == short
    # any other scheme or network, or a choice made for a clamped network, comes back as it is
    adam = mf.Adam(learning_rate=0.03)
    assert rate_for_network(adam, "clamp", "softplus") == (adam, None)
    reparametrised = mf.SemiDual(learning_rate=0.03)
    assert rate_for_network(reparametrised, "softplus", "softplus") == (reparametrised, None)
    assert rate_for_network(reparametrised, "clamp", "clamp") == (reparametrised, None)
    assert rate_for_network(reparametrised, "clamp", "softplus")[0].learning_rate == 0.01
    assert rate_for_network(reparametrised, None, "softplus") == (reparametrised, None)
    plain_rate, plain_why = rate_for_network(reparametrised, "none", "softplus")
    assert plain_rate.learning_rate == 0.01
    assert plain_why.startswith("rate 0.01, not 0.03: the potential given has no weights kept")
    # the descent after the game slows with the game on a clamped network (a rate of its
    # own given is kept)
    finishing = mf.SemiDual(learning_rate=0.03, decay_steps=1000, finish_steps=300)
    rated, rated_why = rate_for_network(finishing, "clamp", "softplus")
    assert (rated.learning_rate, rated.finish_rate) == (0.01, 0.003)
    assert rated_why == (
        "rate 0.01, not 0.03; the descent after the game's rate 0.003, not 0.03: the "
        "network's weights are clamped, not reparametrised"
    )
    game_given = mf.SemiDual(learning_rate=0.02, decay_steps=1000, finish_steps=300)
    rated, rated_why = rate_for_network(game_given, "clamp", "softplus")
    assert (rated.learning_rate, rated.finish_rate) == (0.02, 0.003)
    assert rated_why.startswith("the descent after the game's rate 0.003, not 0.03: the")
    own = mf.SemiDual(learning_rate=0.03, decay_steps=1000, finish_steps=300, finish_rate=0.01)
    assert rate_for_network(own, "clamp", "softplus")[0].finish_rate == 0.01


def test_each_scheme_builds_its_own_default_network(tmp_path, monkeypatch):
    """The semi-dual game's widths, (64, 64) up to d = 64, reach the network of every path
    that builds one (the command line's settings and its record of why, ``mf.fit``, the
    estimator); the other schemes keep :func:`auto_widths`, (2d, 2d) above d = 32; a width
    given wins, and a run resumed keeps the widths it was saved with."""
    import json
    import sys

    import jax

    from mongeflow import cli, runs
    from mongeflow.fit import _initial_state
    from mongeflow.maps.default import auto_widths

    assert mf.SemiDual.default_widths(64) == (64, 64) and auto_widths(64) == (128, 128)
    assert mf.SemiDual.default_widths(65) == auto_widths(65) == (130, 130)
    assert mf.Adam.default_widths(40) == auto_widths(40) == (80, 80)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 40)))
    np.save(tmp_path / "y.npy", 1.0 + 0.5 * rng.normal(size=(300, 40)))
    common = ["--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"]

    def network(net):
        return [w.shape[-2] for w in (net.input_weight, *net.z_weights)]

    def widths(*flags, resume=False):
        args = cli._parser().parse_args(["fit", *common, *flags, "--out", str(tmp_path / "r")])
        settings = runs.fit_settings(vars(args), tmp_path / "r", resume=resume, overwrite=False)
        _, scheme, _, potential = runs.build(settings)
        assert network(potential(jax.random.key(0))) == settings["widths"]
        if not resume:
            runs.start(settings, tmp_path / "r", resume=False)
        return scheme.name, settings["widths"], settings["chosen"][0]

    chosen = "widths (64, 64) for d = 40 (the semi-dual game's up to d = 64)"
    assert widths() == ("semidual", [64, 64], chosen)
    assert widths("--scheme", "adam", "--divergence", "energy")[:2] == ("adam", [80, 80])
    assert widths("--widths", "32", "16")[:2] == ("semidual", [32, 16])
    # a run saved with other widths (as before the semi-dual game's were narrowed) keeps them
    widths()
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    record["settings"]["widths"] = [128, 128]
    (tmp_path / "r" / "run.json").write_text(json.dumps(record))
    assert widths(resume=True)[:2] == ("semidual", [128, 128])
    # a run saved before the steps followed the rows (48 000 steps, no jitter setting stored)
    # resumes with those; a new one gets 8 000 steps for its 270 rows and the jitter
    args = cli._parser().parse_args(["fit", *common, "--out", str(tmp_path / "r")])
    record["settings"]["steps"] = record["settings"]["decay_steps"] = 48_000
    del record["settings"]["jitter"]
    (tmp_path / "r" / "run.json").write_text(json.dumps(record))
    resumed = runs.fit_settings(vars(args), tmp_path / "r", resume=True, overwrite=False)
    fresh = runs.fit_settings(vars(args), tmp_path / "new", resume=False, overwrite=False)
    jitters = runs.build(resumed)[1].jitter, runs.build(fresh)[1].jitter  # settle the steps
    assert (resumed["steps"], fresh["steps"], *jitters) == (48_000, 8_000, 0.0, 0.1)

    class Built(Exception):
        pass

    def built(problem, scheme, divergence, potential, **kwargs):
        raise Built(network(potential(jax.random.key(0))))

    # the estimator's network, without a fit (it imports `fit` from the module when it fits)
    monkeypatch.setattr(sys.modules["mongeflow.fit"], "fit", built)
    with pytest.raises(Built) as made:
        mf.MongeTransport().fit(np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy"))
    assert made.value.args[0] == [64, 64]
    state = _initial_state(
        mf.get_problem("gaussian-pair", dim=40, n=64), mf.SemiDual(), None,
        jax.random.split(jax.random.key(0), 1),
    )  # fmt: skip
    assert state.potentials.input_weight.shape == (1, 64, 40)


def test_the_semidual_game_reparametrises_its_weights_up_to_d_8(tmp_path, monkeypatch):
    """Up to d = 8, over 12 000 steps or more, the semi-dual game's networks keep their
    weights non-negative by a softplus reparametrisation, else by the clamp, on every path
    that builds the default network (the command line and its record of why, ``mf.fit``,
    the estimator); other schemes clamp; a value given wins; a run saved before the setting
    existed resumes with the clamp it ran with; and a checkpoint of one kind refuses to
    resume the other."""
    import json

    import jax

    from mongeflow import cli, runs
    from mongeflow.fit import _initial_state

    long, short = mf.SemiDual(decay_steps=12000), mf.SemiDual(decay_steps=11999)
    assert [long.default_nonnegativity(d) for d in (2, 8, 9)] == ["softplus", "softplus", "clamp"]
    assert short.default_nonnegativity(2) == mf.Adam().default_nonnegativity(2) == "clamp"
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 2)))
    np.save(tmp_path / "y.npy", 1.0 + 0.5 * rng.normal(size=(300, 2)))
    given = ["--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"]

    def built(out, *flags, resume=False):
        args = cli._parser().parse_args(["fit", *given, *flags, "--out", str(out)])
        settings = runs.fit_settings(vars(args), out, resume=resume, overwrite=False)
        make = runs.build(settings)[3]
        if not resume:
            runs.start(settings, out, resume=False)
        return make(jax.random.key(0)).nonnegativity, settings["chosen"]

    kind, chosen = built(tmp_path / "auto")
    assert kind == "softplus" and "softplus reparametrisation (up to d = 8" in chosen[-1]
    kind, chosen = built(tmp_path / "given", "--nonnegativity", "clamp")
    assert kind == "clamp" and chosen[-1] == "given, over the choice above: nonnegativity clamp"
    kind, chosen = built(tmp_path / "short", "--decay-steps", "5000")  # the rule, for these
    assert kind == "clamp" and chosen[-1].endswith("decay_steps 5000, nonnegativity clamp")
    record = json.loads((tmp_path / "auto" / "run.json").read_text())
    del record["settings"]["nonnegativity"]  # as saved before the setting existed
    (tmp_path / "auto" / "run.json").write_text(json.dumps(record))
    assert built(tmp_path / "auto", resume=True)[0] == "clamp"

    problem = mf.get_problem("gaussian", dim=2)
    state = _initial_state(problem, long, None, jax.random.split(jax.random.key(0), 1))
    assert state.potentials.nonnegativity == "softplus"
    monkeypatch.setattr(mf.SemiDual, "reparametrised_steps", 2)  # a short fit reparametrised
    from mongeflow.estimator import MongeTransport

    est = MongeTransport(scheme="semidual", max_steps=2)
    est.fit(np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy"))
    assert est.result_.potentials.nonnegativity == "softplus"

    common = dict(dim=2, steps=4, log_every=2, final_eval_size=0)
    mf.fit("gaussian", mf.Adam(), callbacks=[mf.Checkpoint(tmp_path / "ck")], **common)
    other = mf.default_potential(2, nonnegativity="softplus")
    with pytest.raises(ValueError, match=r"nonnegativity: 'clamp' -> 'softplus'"):
        mf.fit(
            "gaussian",
            mf.Adam(),
            potential=other,
            callbacks=[mf.Checkpoint(tmp_path / "ck", resume=True)],
            **common,
        )


def test_the_descent_after_the_game_given_on_the_command_line(tmp_path, monkeypatch):
    """Where the automatic game is followed by its descent (d = 6, rows jittered, networks
    reparametrised), ``--finish-steps`` sets its length: the run's steps are the game's and
    the descent's, and the sentence on it in ``chosen`` is said for the steps given (left
    out for 0). With the networks clamped, the game's rate and the descent's are re-chosen
    (0.01, 0.003), each unless given, on the command line as in the estimator."""
    import importlib

    from mongeflow import cli, runs

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(20_000, 6)).astype(np.float32))
    np.save(tmp_path / "y.npy", (1.0 + 0.5 * rng.normal(size=(20_000, 6))).astype(np.float32))
    common = ["--source", str(tmp_path / "x.npy"), "--target", f"samples:{tmp_path / 'y.npy'}"]

    def settings_and_scheme(*flags):
        args = cli._parser().parse_args(["fit", *common, *flags, "--out", str(tmp_path / "r")])
        settings = runs.fit_settings(vars(args), tmp_path / "r", resume=False, overwrite=False)
        return settings, runs.build(settings)[1]

    def built(*flags):
        settings, scheme = settings_and_scheme(*flags)
        said = [r for r in settings["chosen"] if "φ alone descends" in r]
        return settings["steps"], scheme.decay_steps, scheme.finish_steps, said

    def scheme_of(*flags):
        return settings_and_scheme(*flags)[1]

    steps, game, finish, said = built()
    assert finish == 2_000 and steps == game + 2_000 and game >= 12_000
    assert len(said) == 1 and said[0].startswith("then 2000 steps")
    assert built("--finish-steps", "0") == (game, game, 0, [])
    steps, _, finish, said = built("--finish-steps", "600")
    assert (steps, finish) == (game + 600, 600) and said[0].startswith("then 600 steps")
    # the networks clamped instead: the game's rate and the descent's slow down, and the
    # sentence quotes the descent's rate; a rate of its own given is kept
    args = ["--nonnegativity", "clamp"]
    steps, _, finish, said = built(*args)
    assert (steps, finish) == (game + 2_000, 2_000)
    assert "rate 0.003 decaying" in said[0] and "rate 0.03 decaying" not in said[0]
    assert scheme_of(*args).finish_rate == 0.003
    assert scheme_of(*args, "--finish-rate", "0.03").finish_rate == 0.03
    assert scheme_of("--finish-batches", "8").finish_batches == 8
    given_game = scheme_of(*args, "--learning-rate", "0.03")  # the game's rate alone given
    assert (given_game.learning_rate, given_game.finish_rate) == (0.03, 0.003)
    settings, _ = settings_and_scheme(*args, "--finish-steps", "0")  # no descent, no word on it
    assert not any("descent" in r for r in settings["chosen"])

    # the estimator: the same rates where a shorter game clamps the network, a rate given kept
    class Trained(Exception):
        """The scheme a fit was about to run."""

    def stop(problem, scheme, *args, **kwargs):
        raise Trained(scheme)

    monkeypatch.setattr(importlib.import_module("mongeflow.fit"), "fit", stop)
    x, y = np.load(tmp_path / "x.npy"), np.load(tmp_path / "y.npy")
    for settings, rates in (
        ({"decay_steps": 5000}, (0.01, 0.003)),
        ({"decay_steps": 5000, "finish_rate": 0.03}, (0.01, 0.03)),
        ({"decay_steps": 5000, "learning_rate": 0.03}, (0.03, 0.003)),
        ({}, (0.03, 0.03)),
    ):
        with pytest.raises(Trained) as ran:
            mf.MongeTransport(scheme_settings=settings).fit(x, y)
        assert (ran.value.args[0].learning_rate, ran.value.args[0].finish_rate) == rates
