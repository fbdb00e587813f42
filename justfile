# aurora_jax tasks. Extra key=value arguments are Hydra overrides: `just forecast horizon=7`.
set positional-arguments := false

py := if path_exists(".venv/bin/python") == "true" { ".venv/bin/python" } else { "python" }

default:
    @just --list

# create .venv and install the package with dev tools
setup:
    python3.11 -m venv .venv
    .venv/bin/pip install -e ".[dev]"

# load data into the store (default: embedded arch datasets; data.source_dir=../shared/data for crypto)
ingest *args:
    {{py}} -m aurora_jax.cli ingest {{args}}

# train every module of an experiment: just train experiment=btc_daily
train *args:
    {{py}} -m aurora_jax.cli train {{args}}

# list registered model versions
models *args:
    {{py}} -m aurora_jax.cli models {{args}}

# forecast cone: just forecast experiment=btc_daily horizon=14
forecast *args:
    {{py}} -m aurora_jax.cli forecast {{args}}

# walk-forward evaluation against peers: just eval experiment=btc_daily
eval *args:
    {{py}} -m aurora_jax.cli eval {{args}}

# stylized-facts report of the simulation teacher: just eval-sim experiment=teacher_btc
eval-sim *args:
    {{py}} -m aurora_jax.cli eval-sim {{args}}

# what-if scenario: just scenario asset=BTC-USD iv_30d_atm=90
scenario *args:
    {{py}} -m aurora_jax.cli scenario {{args}}

# forecast-driven paper-trading backtest
backtest *args:
    {{py}} -m aurora_jax.cli backtest {{args}}

# start the HTTP service
serve *args:
    {{py}} -m aurora_jax.cli serve {{args}}

# nightly batch: every asset, every horizon, as of the latest data
nightly *args:
    {{py}} -m aurora_jax.cli nightly {{args}}

# benchmarks: just bench data | sim | serve | risk (prints ours and the peers' figures)
bench *args:
    {{py}} -m aurora_jax.cli bench {{args}}

# the test suite (what CI runs)
test *args:
    {{py}} -m pytest -n 2 {{args}}
