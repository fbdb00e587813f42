"""Fractional Gaussian noise by Davies–Harte circulant embedding, with piecewise-constant H.

fGn with Hurst exponent ``H`` on a grid of step ``dt`` is the stationary Gaussian sequence
``dW_k = W^H((k+1) dt) - W^H(k dt)`` with autocovariance

    gamma(k) = dt^{2H} / 2 * (|k+1|^{2H} - 2|k|^{2H} + |k-1|^{2H}).

Davies–Harte (exact): embed ``gamma(0..M)`` (``M >= n``, the next 5-smooth size) in the
circulant vector ``c = (gamma_0, ..., gamma_M, gamma_{M-1}, ..., gamma_1)`` of length
``m = 2M``; its eigenvalues ``lam = FFT(c)`` are non-negative for fGn for every ``H`` in (0, 1).
With ``V = A + iB``, ``A, B ~ N(0, I_m)``, ``Y = FFT(sqrt(lam / m) V)`` has ``Re Y`` and
``Im Y`` independent with covariance ``circ(c)``; the first ``n`` entries of each are two
exact fGn samples. One complex FFT of length ``2M`` therefore gives two paths.

Piecewise-constant H (a discretised multifractional BM): the grid is split into blocks of
``block_len`` steps with exponents ``H_b``, ``|H_{b+1} - H_b| <= eps_h``. All blocks are
driven by the **same** complex white noise ``V``; block ``b`` takes its increments from the
exact fGn(``H_b``) sample ``FFT(sqrt(lam_{H_b}/m) V)``. Each block's increments therefore have
exactly the fGn(``H_b``) covariance, and since ``lam_H`` is continuous in ``H`` the noise is
continuous across block boundaries when ``eps_h`` is small (for constant H it reduces to one
exact fGn path). Cost: one FFT per distinct block.

Public API: :func:`sample_fgn` (constant H, traced H allowed, compiled once per shape),
:func:`sample_fgn_piecewise`, :class:`HurstSchedule` (validated block exponents) and
:class:`FGNSampler` (validated constructor for fixed settings).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from aurora_jax.errors import InvalidParameterError
from aurora_jax.sim._checks import (
    check_finite,
    check_open_interval,
    check_positive,
    check_positive_int,
)


def fgn_autocovariance(hurst, n: int, dt=1.0) -> Float[Array, " n"]:
    """``gamma(k)`` for ``k = 0 .. n-1`` (see module docstring)."""
    k = jnp.arange(n, dtype=jnp.float32)
    h2 = 2.0 * jnp.asarray(hurst, jnp.float32)
    g = 0.5 * (jnp.abs(k + 1) ** h2 - 2.0 * jnp.abs(k) ** h2 + jnp.abs(k - 1) ** h2)
    return g * jnp.asarray(dt, jnp.float32) ** h2


def embedding_size(n: int) -> int:
    """Half-size ``M`` of the circulant embedding: the smallest 5-smooth number (``2^a 3^b 5^c``)
    ``>= n``.

    Any ``M >= n - 1`` gives an exact embedding (Davies–Harte use ``M = n``); a 5-smooth size
    keeps the FFT fast while wasting few random numbers (the RNG dominates the cost: ``2M``
    normals per path). The first ``n`` entries of each sample are the fGn path.
    """
    m = max(int(n), 1)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def circulant_eigenvalues(hurst, n: int) -> Float[Array, " m"]:
    """Eigenvalues of the ``m = 2M`` circulant embedding (``M = embedding_size(n)``) of
    unit-step fGn(``hurst``), clipped at 0.

    They are non-negative in exact arithmetic for fGn; the clip only removes float round-off.
    """
    big = embedding_size(n)
    g = fgn_autocovariance(hurst, big + 1)
    c = jnp.concatenate([g, g[1:big][::-1]])  # gamma_0..gamma_M, gamma_{M-1}..gamma_1
    return jnp.maximum(jnp.fft.fft(c.astype(jnp.complex64)).real, 0.0)


def _white(key: PRNGKeyArray, n_pairs: int, m: int) -> Array:
    z = jax.random.normal(key, (2, n_pairs, m), jnp.float32)
    return jax.lax.complex(z[0], z[1])


def _chunked(key: PRNGKeyArray, n_paths: int, chunk: int, one) -> Array:
    """Run ``one(key, pairs) -> (2*pairs, ...)`` over path chunks of ``chunk`` paths.

    Chunking keeps each RNG + FFT batch cache-sized (several times faster on CPU than one
    huge batch); the chunk size changes which key draws which path, not the distribution.
    """
    pairs_total = (n_paths + 1) // 2
    chunk_pairs = max(1, min(chunk // 2, pairs_total))
    n_chunks = -(-pairs_total // chunk_pairs)
    if n_chunks == 1:
        return one(key, chunk_pairs)[:n_paths]
    keys = jax.random.split(key, n_chunks)
    out = jax.lax.map(lambda k: one(k, chunk_pairs), keys)  # (chunks, 2*pairs, ...)
    return out.reshape((-1,) + out.shape[2:])[:n_paths]


def _split_pairs(y: Array, n: int) -> Array:
    return jnp.concatenate([y.real[:, :n], y.imag[:, :n]], axis=0)


@functools.partial(jax.jit, static_argnames=("n", "n_paths", "chunk"))
def sample_fgn(
    key: PRNGKeyArray, hurst, n: int, n_paths: int, dt=1.0, chunk: int = 1024
) -> Float[Array, "paths n"]:
    """``n_paths`` exact fGn(``hurst``) paths of ``n`` increments on a grid of step ``dt``.

    ``hurst`` and ``dt`` are traced: new values reuse the compiled function. Inputs are not
    validated here (they may be traced); use :class:`FGNSampler` for checked settings.
    ``chunk`` paths are generated per batch (``sim.fgn.chunk`` in the config).
    """
    m = 2 * embedding_size(n)
    root = jnp.sqrt(circulant_eigenvalues(hurst, n) / m).astype(jnp.complex64)

    def one(k, pairs):
        y = jnp.fft.fft(_white(k, pairs, m) * root, axis=-1)
        return _split_pairs(y, n)

    scale = jnp.asarray(dt, jnp.float32) ** jnp.asarray(hurst, jnp.float32)
    return _chunked(key, n_paths, chunk, one) * scale


@functools.partial(jax.jit, static_argnames=("block_len", "n_paths", "chunk"))
def sample_fgn_piecewise(
    key: PRNGKeyArray,
    hurst_blocks: Float[Array, " blocks"],
    block_len: int,
    n_paths: int,
    dt=1.0,
    chunk: int = 1024,
) -> Float[Array, "paths n"]:
    """fGn with exponent ``hurst_blocks[b]`` on steps ``b*block_len .. (b+1)*block_len - 1``.

    All blocks share one complex white noise (module docstring); each block's increments
    are an exact fGn(``H_b``) segment, scaled by ``dt^{H_b}``.
    """
    hb = jnp.asarray(hurst_blocks, jnp.float32)
    n_blocks = hb.shape[0]
    n = n_blocks * block_len
    m = 2 * embedding_size(n)
    roots = jax.vmap(lambda h: jnp.sqrt(circulant_eigenvalues(h, n) / m))(hb)
    scales = jnp.asarray(dt, jnp.float32) ** hb

    def one(k, pairs):
        v = _white(k, pairs, m)

        def block(root_b, scale_b, b):
            y = jnp.fft.fft(v * root_b.astype(jnp.complex64), axis=-1)
            seg = jax.lax.dynamic_slice_in_dim(y, b * block_len, block_len, axis=-1)
            return _split_pairs(seg, block_len) * scale_b

        segs = jax.vmap(block, out_axes=1)(roots, scales, jnp.arange(n_blocks))
        return segs.reshape(2 * pairs, n)

    return _chunked(key, n_paths, chunk, one)


class HurstSchedule(eqx.Module):
    """Piecewise-constant Hurst exponents on blocks of ``block_len`` steps.

    Invariants (checked at construction on concrete values): ``0 < H_b < 1``, finite,
    ``|H_{b+1} - H_b| <= eps_h``, ``block_len >= 1``. :meth:`from_unconstrained` builds a
    schedule that satisfies them by construction (for use with traced parameters):
    ``H_0 = h_lo + (h_hi - h_lo) sigmoid(r_0)`` and
    ``H_{b+1} = clip(H_b + eps_h tanh(r_{b+1}), h_lo, h_hi)``.
    """

    values: Float[Array, " blocks"]
    block_len: int = eqx.field(static=True)
    eps_h: float = eqx.field(static=True)

    def __check_init__(self):
        check_positive_int("block_len", self.block_len)
        check_open_interval("eps_h", self.eps_h, 0.0, 1.0)
        check_open_interval("hurst", self.values, 0.0, 1.0)
        vals = self.values
        if not isinstance(vals, jax.core.Tracer):
            jumps = np.abs(np.diff(np.asarray(vals, dtype=np.float64)))
            if jumps.size and jumps.max() > self.eps_h + 1e-7:
                raise InvalidParameterError(
                    "hurst",
                    np.asarray(vals).tolist(),
                    f"|H[b+1] - H[b]| <= eps_h = {self.eps_h}",
                    reason=f"largest block-to-block change is {jumps.max():.4g}",
                )

    @property
    def n_steps(self) -> int:
        return int(self.values.shape[0]) * self.block_len

    @staticmethod
    def from_unconstrained(
        raw: Float[Array, " blocks"], block_len: int, eps_h: float, h_lo: float, h_hi: float
    ) -> HurstSchedule:
        h0 = h_lo + (h_hi - h_lo) * jax.nn.sigmoid(raw[0])

        def step(h, r):
            nxt = jnp.clip(h + eps_h * jnp.tanh(r), h_lo, h_hi)
            return nxt, nxt

        _, rest = jax.lax.scan(step, h0, raw[1:])
        return HurstSchedule(jnp.concatenate([h0[None], rest]), block_len, eps_h)


class FGNSampler(eqx.Module):
    """Validated fGn settings: ``hurst`` (a float or a :class:`HurstSchedule`), ``n``, ``dt``.

    Construction raises :class:`InvalidParameterError` for ``H`` outside (0, 1), NaN, a
    non-positive ``dt`` or ``n``. ``sampler(key, n_paths)`` returns ``(n_paths, n)`` increments.
    """

    hurst: float | HurstSchedule
    n: int = eqx.field(static=True)
    dt: float = 1.0

    def __check_init__(self):
        check_positive_int("n", self.n)
        check_positive("dt", self.dt)
        if isinstance(self.hurst, HurstSchedule):
            if self.hurst.n_steps != self.n:
                raise InvalidParameterError(
                    "n", self.n, f"blocks x block_len = {self.hurst.n_steps} (the schedule length)"
                )
        else:
            check_finite("hurst", self.hurst)
            check_open_interval("hurst", self.hurst, 0.0, 1.0)

    def __call__(self, key: PRNGKeyArray, n_paths: int) -> Float[Array, "paths n"]:
        check_positive_int("n_paths", n_paths)
        if isinstance(self.hurst, HurstSchedule):
            return sample_fgn_piecewise(
                key, self.hurst.values, self.hurst.block_len, n_paths, self.dt
            )
        return sample_fgn(key, self.hurst, self.n, n_paths, self.dt)
