"""Fixtures of the serving tests: a small serving config on the embedded S&P 500 store."""

from __future__ import annotations

import io

import pytest

SMALL = [
    "experiment=smoke", "model=garch", "progress=false", "serving.assets=[SPX]", "serving.max_paths=5000",
    "serving.default_num_paths=1000", "serving.warmup.num_paths=1000", "serving.refresh_s=0",
    "serving.batch.window_ms=5", "serving.nightly.num_paths=1000", "serving.nightly.horizon=5",
    "serving.nightly.crps_levels=19",
]


def serving_config(tmp_path, *extra: str):
    from aurora_jax.config import load_config

    return load_config([*SMALL, f"data.root={tmp_path / 'data'}", f"outputs_dir={tmp_path / 'out'}", *extra])


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(*overrides)``: the small serving config with data and outputs under tmp_path."""
    return lambda *extra: serving_config(tmp_path, *extra)


@pytest.fixture(scope="module")
def serve_cfg(tmp_path_factory):
    return serving_config(tmp_path_factory.mktemp("serve"))


class App:
    """A running app (TestClient entered) with its request log captured."""

    def __init__(self, app, client, log_stream):
        self.app = app
        self.client = client
        self.log_stream = log_stream

    @property
    def service(self):
        return self.app.state.service

    def log_lines(self) -> list[dict]:
        import json

        return [json.loads(x) for x in self.log_stream.getvalue().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def spx_app(spx_store, serve_cfg):
    from litestar.testing import TestClient

    from serving.app import create_app
    from serving.reqlog import RequestLog

    stream = io.StringIO()
    app = create_app(serve_cfg, store=spx_store, log=RequestLog(stream=stream))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield App(app, client, stream)


# -- the engine-backed service (the smoke engine of tests/conftest.py's smoke_run; never trained here) --
ENGINE = [
    "experiment=smoke", "model=engine", "forecast.train_if_missing=false", "progress=false", "serving.max_paths=5000", "serving.default_num_paths=1000",
    "serving.warmup.num_paths=1000", "serving.refresh_s=0", "serving.batch.window_ms=5",
    "serving.engine.path_buckets=[1000,5000]", "serving.engine.batch_buckets=[1,4]",
    "serving.nightly.num_paths=1000", "serving.nightly.horizon=5", "serving.nightly.crps_levels=19",
    # a small driver surrogate (fitted once at start-up, saved per engine version)
    "model.explain.fit.days=400", "model.explain.fit.dates=72", "model.explain.fit.paths=64",
    "model.explain.fit.chunk=24", "model.explain.fit.min_train=12", "model.explain.horizons=[1,5]",
]


def engine_config(smoke_run, tmp, *extra: str, registry=None):
    """The small engine serving config on the smoke engine's store and registry (``registry``
    replaces the registry folder), outputs and surrogates under ``tmp``."""
    from aurora_jax.config import load_config

    reg = registry or smoke_run.cfg.model.train.registry_dir
    return load_config([*ENGINE, f"data.root={smoke_run.cfg.data.root}", f"++model.train.registry_dir={reg}",
                        f"outputs_dir={tmp / 'out'}", f"model.explain.dir={tmp / 'explain'}", *extra])


def start_app(cfg, store):
    """``(App, exit)``: a started app on ``store`` with its request log captured."""
    from litestar.testing import TestClient

    from serving.app import create_app
    from serving.reqlog import RequestLog

    stream = io.StringIO()
    app = create_app(cfg, store=store, log=RequestLog(stream=stream))
    client = TestClient(app, raise_server_exceptions=False)
    client.__enter__()
    return App(app, client, stream), lambda: client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine_serve")


@pytest.fixture(scope="session")
def engine_app(smoke_run, spx_store, engine_dir):
    """The engine service on the embedded S&P 500 (SPX), started once per test process; the
    driver surrogate gets ``explain.min_fidelity=-100`` so that drivers are listed (the smoke
    engine's surrogate is a poor fit: the unreliable branch is tested on its own)."""
    cfg = engine_config(smoke_run, engine_dir, "serving.assets=[SPX]", "model.explain.min_fidelity=-100")
    app, stop = start_app(cfg, spx_store)
    yield app
    stop()


@pytest.fixture
def make_engine_cfg(smoke_run, tmp_path):
    """``make_engine_cfg(*overrides, registry=None)``: :func:`engine_config` under this test's tmp_path."""
    return lambda *extra, registry=None: engine_config(smoke_run, tmp_path, *extra, registry=registry)


@pytest.fixture
def app_starter():
    """``app_starter(cfg, store) -> App``: started apps are stopped at the end of the test."""
    stops = []

    def start(cfg, store):
        app, stop = start_app(cfg, store)
        stops.append(stop)
        return app

    yield start
    for stop in reversed(stops):
        stop()

