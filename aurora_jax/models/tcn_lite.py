"""TCN-lite: a small causal dilated convolution net on mixed features -> mean return path.

Sequence channels per lookback step: ``(r_k m_k, |r_k| m_k, m_k)`` (normalized return,
magnitude, mask). Each block is a causal dilated convolution (left padding
``(kernel - 1) * dilation``, so output ``k`` sees inputs ``<= k`` only) followed by a 1x1
convolution and a residual connection:

    x <- x + W_1x1 gelu(conv_dilated(x))

The receptive field is ``1 + (kernel - 1) * sum(dilations)`` steps. The last step's features,
concatenated with the static context vector (regime, MM indices, vol ratios, RevIN stats), go
through an MLP to the mean of the next ``horizon_max`` scaled returns ``z = r / scale`` (zero
= no raw drift). Trained by masked squared error (see :mod:`aurora_jax.train.stages`).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from aurora_jax.errors import InvalidParameterError
from aurora_jax.models.ssm_student import MLP


class CausalBlock(eqx.Module):
    conv: eqx.nn.Conv1d
    mix: eqx.nn.Conv1d

    def __init__(self, channels: int, kernel: int, dilation: int, *, key: PRNGKeyArray):
        k1, k2 = jax.random.split(key)
        self.conv = eqx.nn.Conv1d(channels, channels, kernel, dilation=dilation,
                                  padding=(((kernel - 1) * dilation, 0),), key=k1)
        self.mix = eqx.nn.Conv1d(channels, channels, 1, key=k2)

    def __call__(self, x: Float[Array, "channels seq"]) -> Float[Array, "channels seq"]:
        return x + self.mix(jax.nn.gelu(self.conv(x)))


class TCNLite(eqx.Module):
    inp: eqx.nn.Conv1d
    blocks: tuple[CausalBlock, ...]
    head: MLP
    horizon_max: int = eqx.field(static=True)

    def __init__(self, context_dim: int, horizon_max: int, *, channels: int, kernel: int,
                 dilations: Sequence[int], hidden: int, key: PRNGKeyArray):
        if int(channels) < 1 or int(kernel) < 2 or not dilations or min(dilations) < 1:
            raise InvalidParameterError("trend.tcn", {"channels": channels, "kernel": kernel, "dilations": list(dilations)},
                                        "channels >= 1, kernel >= 2, non-empty dilations >= 1")
        keys = jax.random.split(key, len(dilations) + 2)
        self.inp = eqx.nn.Conv1d(3, channels, 1, key=keys[0])
        self.blocks = tuple(CausalBlock(channels, kernel, int(d), key=k) for d, k in zip(dilations, keys[1:-1]))
        self.head = MLP(channels + context_dim, horizon_max, hidden, 2, key=keys[-1])
        # start from the zero forecast (returns are close to unpredictable)
        last = self.head.layers[-1]
        self.head = eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), self.head,
                                (0.01 * last.weight, jnp.zeros_like(last.bias)))
        self.horizon_max = int(horizon_max)

    @staticmethod
    def receptive_field(kernel: int, dilations: Sequence[int]) -> int:
        return 1 + (kernel - 1) * int(sum(dilations))

    def features(self, returns: Float[Array, " seq"], mask: Float[Array, " seq"]) -> Float[Array, "channels seq"]:
        u = jnp.stack([returns * mask, jnp.abs(returns) * mask, mask], axis=0)
        x = self.inp(u)
        for block in self.blocks:
            x = block(x)
        return x

    def __call__(self, returns: Float[Array, " seq"], mask: Float[Array, " seq"],
                 context: Float[Array, " ctx"]) -> Float[Array, " horizon_max"]:
        x = self.features(returns, mask)[:, -1]
        return self.head(jnp.concatenate([x, context]))
