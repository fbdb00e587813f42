"""Risk: VaR/ES of forecast paths (var_es), EVT (evt), tail dependence, risk-model backtests
(coverage_tests, es_backtest, diebold_mariano), covariance and robust estimators, DRO-ES
portfolios (dro_es), sizing, the acceptance FSM, circuit breakers, state snapshots, and the
forecast-driven strategy backtest (strategy_backtest, performance, backtest_command)."""
