"""Calibration: volatility regimes (threshold + hysteresis, HMM), the AR/ARMA/GARCH router with
temperature scaling, the ARMA Crossbar Index and TRANS flag, change-point detectors, and the
conformal layer (regime x horizon buffers, adaptive alpha, kappa / kappa+)."""
