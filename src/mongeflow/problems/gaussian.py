"""Closed forms for Gaussians: the Bures map, the Gaussian KL and the exact
constrained flow of affine maps.

These are references for tests and benchmarks; they use NumPy/SciPy in float64.
"""

from __future__ import annotations

import numpy as np
import scipy.integrate
import scipy.linalg


def _sqrtm_psd(S: np.ndarray) -> np.ndarray:
    w, Q = np.linalg.eigh(S)
    return (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T


def bures_map(cov0, cov1) -> np.ndarray:
    """Linear part of the Monge map N(m0, Σ0) → N(m1, Σ1).

    A = Σ0^{-1/2} (Σ0^{1/2} Σ1 Σ0^{1/2})^{1/2} Σ0^{-1/2}, so T*(x) = m1 + A (x − m0).

    Example:
        >>> import numpy as np
        >>> A = bures_map(np.eye(2), 4 * np.eye(2))
        >>> np.allclose(A, 2 * np.eye(2))
        True
    """
    cov0 = np.asarray(cov0, dtype=np.float64)
    cov1 = np.asarray(cov1, dtype=np.float64)
    s0 = _sqrtm_psd(cov0)
    s0_inv = np.linalg.inv(s0)
    A = s0_inv @ _sqrtm_psd(s0 @ cov1 @ s0) @ s0_inv
    return 0.5 * (A + A.T)


def gaussian_kl(mean0, cov0, mean1, cov1) -> float:
    """KL(N(m0, Σ0) | N(m1, Σ1)) = ½ (tr Σ1⁻¹Σ0 + (m1−m0)ᵀΣ1⁻¹(m1−m0) − d + log det Σ1/det Σ0)."""
    mean0, mean1 = np.asarray(mean0, float), np.asarray(mean1, float)
    cov0, cov1 = np.asarray(cov0, float), np.asarray(cov1, float)
    d = mean0.shape[0]
    P1 = np.linalg.inv(cov1)
    r = mean1 - mean0
    _, ld0 = np.linalg.slogdet(cov0)
    _, ld1 = np.linalg.slogdet(cov1)
    return 0.5 * (np.trace(P1 @ cov0) + r @ P1 @ r - d + ld1 - ld0)


def affine_flow(mean0, cov0, mean1, cov1, times, A0=None, m_init=None, rtol=1e-10, atol=1e-12):
    """Exact constrained gradient flow of KL(·|N(m1, Σ1)) over affine maps.

    With T_t(x) = A_t (x − m0) + m_t and source N(m0, Σ0), the flow solves
    dm/dt = −Σ1⁻¹ (m − m1) and dA/dt = S, S symmetric with
    S Σ0 + Σ0 S = 2 A⁻¹ − Σ1⁻¹ A Σ0 − Σ0 A Σ1⁻¹.

    Args:
        mean0, cov0: the Gaussian source.
        mean1, cov1: the Gaussian target.
        times: increasing times at which to report the solution.
        A0, m_init: the initial map (default T_0 = id: A0 = I, m = m0).

    Returns:
        ``(A, m)`` arrays of shapes ``[len(times), d, d]`` and ``[len(times), d]``.
    """
    mean0, mean1 = np.asarray(mean0, float), np.asarray(mean1, float)
    cov0, cov1 = np.asarray(cov0, float), np.asarray(cov1, float)
    d = mean0.shape[0]
    P1 = np.linalg.inv(cov1)
    A0 = np.eye(d) if A0 is None else np.asarray(A0, float)
    m_init = mean0 if m_init is None else np.asarray(m_init, float)

    def rhs(_t, z):
        A = z[: d * d].reshape(d, d)
        m = z[d * d :]
        Q = 2 * np.linalg.inv(A) - P1 @ A @ cov0 - cov0 @ A @ P1
        S = scipy.linalg.solve_continuous_lyapunov(cov0, 0.5 * (Q + Q.T))
        return np.concatenate([(0.5 * (S + S.T)).ravel(), -P1 @ (m - mean1)])

    times = np.asarray(times, float)
    z0 = np.concatenate([A0.ravel(), m_init])
    sol = scipy.integrate.solve_ivp(
        rhs, (0.0, float(times[-1])), z0, t_eval=times, rtol=rtol, atol=atol, method="DOP853"
    )
    if not sol.success:
        raise RuntimeError(f"affine flow integration failed: {sol.message}")
    zs = sol.y.T
    return zs[:, : d * d].reshape(-1, d, d), zs[:, d * d :]
