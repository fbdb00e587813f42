"""Fixtures of the serving tests: a small serving config on the embedded S&P 500 store."""

from __future__ import annotations

import io

import pytest

SMALL = [
    "experiment=smoke", "progress=false", "serving.assets=[SPX]", "serving.max_paths=5000",
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
