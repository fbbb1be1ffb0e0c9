"""Reference posterior moments of the logistic-regression problems, by long NUTS runs.

For each dataset this runs several independent NUTS chains (Hoffman & Gelman 2014) with
blackjax, each tuned by Stan-style window adaptation of the step size (dual averaging,
target acceptance 0.8) and of a dense inverse mass matrix, in float64, on the posterior (1)
of ``mongeflow.problems.posterior`` with the default prior N(0, I). From the kept draws
(all chains pooled) it computes per coordinate:

- the posterior mean and sd (ddof = 1);
- the effective sample size of the mean, ``ess``, by the multi-chain autocorrelation
  estimator with Geyer's initial monotone sequence (``blackjax.diagnostics.
  effective_sample_size``; Gelman et al., BDA3 §11.5; Vehtari et al. 2021), and the
  ESS ``ess_sq`` of (w_j − mean_j)² likewise;
- MCSE of the mean = sd / sqrt(ess);
- MCSE of the sd by the delta method: Var(ŝ²) ≈ Var((w − m)²) / ess_sq and ŝ = sqrt(ŝ²),
  so MCSE(ŝ) = sd((w − m)²) / (2 ŝ sqrt(ess_sq));
- as an independent check of the MCSE of the mean, the batch-means estimate (each chain cut
  into 50 consecutive batches; MCSE = sd of the batch means / sqrt(number of batches));
- the rank-normalised split R-hat of Vehtari et al. (2021) (``blackjax.diagnostics.rhat``).

As a check independent of MCMC it also estimates the same means and sds by self-normalised
importance sampling from a multivariate Student-t (ν = 10) centred at the posterior mode
with the inverse Hessian there as scale (the Laplace approximation with heavier tails), and
prints the largest differences from the NUTS values in posterior sd units next to the
importance sampler's own noise level, 1/sqrt(ESS_IS) (Kong's ESS = 1/Σ w̄_i²).

The results go to ``src/mongeflow/problems/data/logistic_<dataset>.npz`` (read by
``mongeflow.problems.posterior.posterior_reference``); what is printed is kept in
``benchmarks/posterior/reference.txt``.

Usage (needs the ``mcmc`` extra: ``pip install -e ".[mcmc]"``)::

    python benchmarks/posterior/reference.py --dataset all
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import blackjax  # noqa: E402
import blackjax.diagnostics  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import mongeflow  # noqa: E402
from mongeflow.problems.posterior import (  # noqa: E402
    DATASETS,
    PRIOR_SCALE,
    logistic_data,
    logistic_potential_fn,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "src" / "mongeflow" / "problems" / "data"


def run_chains(dataset: str, *, chains: int, warmup: int, draws: int, seed: int, init_scale):
    """Warm up and run ``chains`` NUTS chains; returns draws ``[chains, draws, d]`` and
    per-chain statistics."""
    potential = logistic_potential_fn(dataset, PRIOR_SCALE)
    logdensity = lambda w: -potential(w)
    d = logistic_data(dataset).shape[1]

    @jax.jit
    def adapt(key, position):
        warm = blackjax.window_adaptation(
            blackjax.nuts,
            logdensity,
            is_mass_matrix_diagonal=False,
            target_acceptance_rate=0.8,
            adaptation_info_fn=lambda state, info, adaptation_state: None,
        )
        (state, params), _ = warm.run(key, position, num_steps=warmup)
        return state, params["step_size"], params["inverse_mass_matrix"]

    @jax.jit
    def sample(key, state, step_size, inverse_mass_matrix):
        kernel = blackjax.nuts(logdensity, step_size, inverse_mass_matrix)

        def one(state, k):
            state, info = kernel.step(k, state)
            return state, (
                state.position,
                info.acceptance_rate,
                info.is_divergent,
                info.num_integration_steps,
            )

        _, out = jax.lax.scan(one, state, jax.random.split(key, draws))
        return out

    key = jax.random.key(seed)
    all_draws, stats = [], []
    for c in range(chains):
        k_init, k_warm, k_draw = jax.random.split(jax.random.fold_in(key, c), 3)
        # over-dispersed starts (the posterior sd's are below 1), so that R-hat means something
        start = init_scale * jax.random.normal(k_init, (d,), dtype=jnp.float64)
        t0 = time.perf_counter()
        state, step_size, imm = adapt(k_warm, start)
        jax.block_until_ready(state)
        t1 = time.perf_counter()
        pos, acc, div, nsteps = sample(k_draw, state, step_size, imm)
        pos = np.asarray(pos)
        t2 = time.perf_counter()
        all_draws.append(pos)
        stats.append(
            {
                "step_size": float(step_size),
                "acceptance": float(np.mean(acc)),
                "divergences": int(np.sum(div)),
                "mean_leapfrog": float(np.mean(nsteps)),
                "warmup_s": round(t1 - t0, 2),
                "sampling_s": round(t2 - t1, 2),
            }
        )
    return np.stack(all_draws), stats


def batch_means_mcse(draws: np.ndarray, batches: int = 50) -> np.ndarray:
    """MCSE of the pooled mean from non-overlapping batch means (``batches`` per chain)."""
    c, n, d = draws.shape
    b = n // batches
    means = draws[:, : b * batches].reshape(c, batches, b, d).mean(2).reshape(-1, d)
    return means.std(0, ddof=1) / np.sqrt(means.shape[0])


def summarise(draws: np.ndarray) -> dict:
    """Moments, MCSEs (ESS-based and batch means), ESS and R-hat of ``draws [c, n, d]``."""
    c, n, d = draws.shape
    flat = draws.reshape(-1, d)
    mean = flat.mean(0)
    sd = flat.std(0, ddof=1)
    sq = (draws - mean) ** 2
    ess = np.asarray(blackjax.diagnostics.effective_sample_size(jnp.asarray(draws)))
    ess_sq = np.asarray(blackjax.diagnostics.effective_sample_size(jnp.asarray(sq)))
    rhat = np.asarray(blackjax.diagnostics.rhat(jnp.asarray(draws)))
    mcse_mean = sd / np.sqrt(ess)
    mcse_sd = sq.reshape(-1, d).std(0, ddof=1) / (2.0 * sd * np.sqrt(ess_sq))
    return {
        "mean": mean,
        "sd": sd,
        "mcse_mean": mcse_mean,
        "mcse_sd": mcse_sd,
        "mcse_mean_bm": batch_means_mcse(draws),
        "ess": ess,
        "ess_sq": ess_sq,
        "rhat": rhat,
        "n_draws": np.asarray(c * n),
    }


def importance_check(dataset: str, n: int, seed: int) -> dict:
    """Means and sds of the posterior by self-normalised importance sampling from a
    Student-t (ν = 10) Laplace proposal: mode by Newton's method, scale (∇²V)⁻¹ there."""
    potential = logistic_potential_fn(dataset, PRIOR_SCALE)
    d = logistic_data(dataset).shape[1]
    grad, hess = jax.jit(jax.grad(potential)), jax.jit(jax.hessian(potential))
    mode = jnp.zeros(d)
    for _ in range(50):
        mode = mode - jnp.linalg.solve(hess(mode), grad(mode))
    mode = np.asarray(mode)
    chol = np.linalg.cholesky(np.linalg.inv(np.asarray(hess(jnp.asarray(mode)))))
    nu = 10.0
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    radial = np.sqrt(nu / rng.chisquare(nu, n))
    x = mode + (z * radial[:, None]) @ chol.T
    maha = np.sum(np.linalg.solve(chol, (x - mode).T) ** 2, axis=0)
    log_q = -0.5 * (nu + d) * np.log1p(maha / nu)
    log_p = -np.asarray(jax.jit(jax.vmap(potential))(jnp.asarray(x)))
    log_w = log_p - log_q
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mean = w @ x
    sd = np.sqrt(w @ (x - mean) ** 2)
    return {"mean": mean, "sd": sd, "ess": 1.0 / np.sum(w**2), "mode": mode}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="all", choices=(*DATASETS, "all"))
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=25_000, help="kept draws per chain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-scale", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--is-draws", type=int, default=400_000, help="importance-sampling check (0: skip)"
    )
    args = parser.parse_args(argv)

    print("command: python benchmarks/posterior/reference.py " + " ".join(sys.argv[1:]))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores visible, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
        f"jax {jax.__version__}, blackjax {blackjax.__version__}, "
        f"mongeflow {mongeflow.__version__}; date {time.strftime('%Y-%m-%d')}"
    )
    datasets = DATASETS if args.dataset == "all" else (args.dataset,)
    args.out.mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        t0 = time.perf_counter()
        draws, stats = run_chains(
            dataset,
            chains=args.chains,
            warmup=args.warmup,
            draws=args.draws,
            seed=args.seed,
            init_scale=args.init_scale,
        )
        res = summarise(draws)
        wall = time.perf_counter() - t0
        settings = {
            "dataset": dataset,
            "prior_scale": PRIOR_SCALE,
            "sampler": "NUTS (blackjax), dense mass matrix, window adaptation",
            "target_acceptance": 0.8,
            "chains": args.chains,
            "warmup": args.warmup,
            "draws_per_chain": args.draws,
            "seed": args.seed,
            "init_scale": args.init_scale,
            "dtype": "float64",
            "mcse": "ESS-based (multi-chain Geyer); sd by the delta method",
            "blackjax": blackjax.__version__,
            "chain_stats": stats,
            "wall_s": round(wall, 1),
        }
        path = args.out / f"logistic_{dataset}.npz"
        np.savez(
            path,
            **res,
            prior_scale=np.asarray(PRIOR_SCALE),
            settings=np.asarray(json.dumps(settings)),
        )
        d = draws.shape[2]
        rel_mean = res["mcse_mean"] / res["sd"]
        rel_sd = res["mcse_sd"] / res["sd"]
        rel_bm = res["mcse_mean_bm"] / res["sd"]
        print()
        print(
            f"== {dataset}: d = {d}, prior N(0, {PRIOR_SCALE:g}² I), {args.chains} chains × "
            f"({args.warmup} warmup + {args.draws} draws), wall {wall:.1f} s -> {path.name}"
        )
        for c, s in enumerate(stats):
            print(
                f"  chain {c}: step {s['step_size']:.3f}, acceptance {s['acceptance']:.3f}, "
                f"divergences {s['divergences']}, mean leapfrog steps "
                f"{s['mean_leapfrog']:.1f}, warmup {s['warmup_s']} s, sampling "
                f"{s['sampling_s']} s"
            )
        print(
            f"  max R-hat {res['rhat'].max():.4f}; ESS of the means min {res['ess'].min():.0f} "
            f"/ median {np.median(res['ess']):.0f}; ESS of (w-m)² min {res['ess_sq'].min():.0f}"
        )
        print(
            f"  max MCSE/sd: mean {rel_mean.max():.4f} (batch means {rel_bm.max():.4f}), "
            f"sd {rel_sd.max():.4f}"
        )
        if args.is_draws > 0:
            t1 = time.perf_counter()
            check = importance_check(dataset, args.is_draws, args.seed)
            mode_gap = np.max(np.abs(check["mode"] - res["mean"]) / res["sd"])
            print(
                f"  importance-sampling check ({args.is_draws} Student-t draws, ESS_IS "
                f"{check['ess']:.0f}, {time.perf_counter() - t1:.1f} s): max |mean_IS - mean| "
                f"/ sd = {np.max(np.abs(check['mean'] - res['mean']) / res['sd']):.4f}, max "
                f"|sd_IS / sd - 1| = {np.max(np.abs(check['sd'] / res['sd'] - 1)):.4f}; "
                f"IS noise per coordinate ~ 1/sqrt(ESS_IS) = {check['ess'] ** -0.5:.4f}; "
                f"max |mode - mean| / sd = {mode_gap:.2f}"
            )
        print("   j      mean        sd   mcse_mean  mcse_bm   mcse_sd      ess   R-hat")
        for j in range(d):
            name = "intercept" if j == d - 1 else f"{j:9d}"
            print(
                f"  {name} {res['mean'][j]:9.4f} {res['sd'][j]:9.4f} {res['mcse_mean'][j]:9.5f}"
                f" {res['mcse_mean_bm'][j]:9.5f} {res['mcse_sd'][j]:9.5f} {res['ess'][j]:8.0f}"
                f" {res['rhat'][j]:7.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
