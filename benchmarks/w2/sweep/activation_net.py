"""Variants of the potential's network for the semi-dual game (both ways), outside the
package: the activation (softplus, CELU, half of each, softplus(βu)/β with each unit's β
learnt) and rank-1 quadratic units in every layer (as the benchmark's own DenseICNN).
Used by ``activation.py``; measured 2026-12-04, see README.md."""
import equinox as eqx, jax, jax.numpy as jnp
from mongeflow.maps.base import Potential
from mongeflow.maps.icnn import _uniform, _identity_quadratic

def celu(u):
    return jnp.where(u > 0, u, jnp.expm1(jnp.minimum(u, 0.0)))

class QICNN(Potential):
    in_w: jax.Array; in_b: jax.Array; in_q: jax.Array | None
    z_w: tuple; x_w: tuple; x_q: tuple; bs: tuple
    out_w: jax.Array; out_b: jax.Array
    quad_diag: jax.Array; quad_factor: jax.Array
    log_beta: tuple
    act: str = eqx.field(static=True)
    quad_units: bool = eqx.field(static=True)
    def __init__(self, dim, key, widths=(64, 64), act="softplus", quad_units=True, first_act=True, beta0=1.0):
        keys = iter(jax.random.split(key, 5 * len(widths) + 6))
        dt = jnp.float32
        self.act = act; self.quad_units = quad_units
        self.in_w = _uniform(next(keys), (widths[0], dim), dim, dt)
        self.in_b = _uniform(next(keys), (widths[0],), dim, dt)
        self.in_q = _uniform(next(keys), (widths[0], dim), dim, dt) if quad_units else None
        zw, xw, xq, bs = [], [], [], []
        for a, b in zip(widths[:-1], widths[1:]):
            zw.append(jnp.maximum(0.1 * jax.random.normal(next(keys), (b, a), dt), 0))
            xw.append(_uniform(next(keys), (b, dim), dim, dt))
            xq.append(_uniform(next(keys), (b, dim), dim, dt) if quad_units else None)
            bs.append(_uniform(next(keys), (b,), a, dt))
        self.z_w, self.x_w, self.x_q, self.bs = tuple(zw), tuple(xw), tuple(xq), tuple(bs)
        self.out_w = jnp.zeros((widths[-1],), dt)
        self.out_b = jnp.zeros((), dt)
        self.log_beta = tuple(jnp.full((w,), jnp.log(beta0), dt) for w in widths)
        self.quad_diag, self.quad_factor = _identity_quadratic(dim, min(dim, 64), 1.0, dt)
    def _s(self, u, k=0):
        if self.act == "beta":
            b = jnp.exp(self.log_beta[k]); return jax.nn.softplus(b * u) / b
        if self.act == "mix":
            h = u.shape[0] // 2
            return jnp.concatenate([jax.nn.softplus(u[:h]), celu(u[h:])])
        return jax.nn.softplus(u) if self.act == "softplus" else celu(u)
    def __call__(self, x):
        a = self.in_w @ x + self.in_b
        if self.in_q is not None:
            a = a + (self.in_q @ x) ** 2
        z = self._s(a, 0)
        for k, (wz, wx, q, b) in enumerate(zip(self.z_w, self.x_w, self.x_q, self.bs), 1):
            a = wz @ z + wx @ x + b
            if q is not None:
                a = a + (q @ x) ** 2
            z = self._s(a, k)
        out = self.out_w @ z + self.out_b
        Lx = self.quad_factor.T @ x
        return out + 0.5 * (jnp.sum(jax.nn.softplus(self.quad_diag) * x**2) + Lx @ Lx)
    def project(self):
        return eqx.tree_at(lambda m: (m.z_w, m.out_w), self,
                           (tuple(jnp.maximum(w, 0.0) for w in self.z_w), jnp.maximum(self.out_w, 0)))
