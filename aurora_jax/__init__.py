"""aurora_jax: probabilistic price-distribution forecasting and risk engine in JAX."""

__version__ = "0.1.0"


def forecast(*args, **kwargs):
    """See :func:`aurora_jax.forecast.api.forecast`."""
    from aurora_jax.forecast.api import forecast as _forecast

    return _forecast(*args, **kwargs)
