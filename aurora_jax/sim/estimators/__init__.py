"""Estimators of path properties: Hurst exponent, jump tests, tail indices, p-variation.

Import from the submodules (``tails``, ``hurst``, ``bns``, ``pvariation``); the tail
estimators are plain numpy so other modules (risk) can use them without JAX.
"""
