"""Simulation core: the rough-Lévy neural fractional SDE teacher and its building blocks.

Submodules (import them directly; this package imports nothing heavy on purpose):

- ``fgn``          fractional Gaussian noise by Davies–Harte, piecewise-constant Hurst exponent
- ``fbm_path``     a diffrax path over pre-sampled fGn increments (the fBM control)
- ``jumps``        compound Poisson jumps with heavy-tailed marks
- ``hawkes``       self-exciting (Hawkes) jump times with an exponential kernel
- ``nfsde``        regime-dependent neural fractional SDE (equinox) and its diffrax solve
- ``signature``    truncated path signatures and the signature MMD
- ``quasi_likelihood``  Whittle QL (log-variance proxy) and jump-diffusion QL (daily returns)
- ``estimators``   Hurst, BNS jump test, Hill / extremal index, p-variation
- ``teacher``      the fitted teacher: ``load_teacher`` / ``Teacher.simulate``
- ``report``       ``eval-sim``: stylized facts, real vs simulated
"""
