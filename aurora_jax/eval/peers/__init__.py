"""Peer forecasters for the walk-forward evaluation (all follow :class:`Forecaster`)."""
