"""Method name -> forecaster. Peers are built here; other forecasters (``aurora``, the JAX
engine) come from ``eval.forecasters``: ``name: "module:factory"`` with ``factory(cfg) ->
Forecaster``. A forecaster whose module does not exist yet is *unavailable* (reported, and
skipped when ``eval.skip_unavailable``); an unknown name is an error."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig

from aurora_jax.errors import InvalidParameterError, ModelUnavailableError
from aurora_jax.eval.forecaster import Forecaster
from aurora_jax.eval.peers.bootstrap import BootstrapPeer
from aurora_jax.eval.peers.dvol import DvolPeer
from aurora_jax.eval.peers.ewma import EwmaPeer
from aurora_jax.eval.peers.garch import GarchPeer
from aurora_jax.models.garch import GarchSpec

PEERS: tuple[str, ...] = ("garch_t", "gjr_garch_t", "ewma", "bootstrap", "dvol_gaussian")


def build_peer(name: str, cfg: DictConfig) -> Forecaster:
    pc = cfg.eval.peers
    if name in ("garch_t", "gjr_garch_t"):
        g = pc.garch
        spec = GarchSpec(p=1, o=1 if name == "gjr_garch_t" else 0, q=1, dist=str(g.dist),
                         window_days=int(g.window_days), min_days=int(g.min_days))
        return GarchPeer(name, spec)
    if name == "ewma":
        return EwmaPeer(name, float(pc.ewma.lam), int(pc.ewma.window_days), int(pc.ewma.init_days))
    if name == "bootstrap":
        return BootstrapPeer(name, int(pc.bootstrap.window_days))
    if name == "dvol_gaussian":
        return DvolPeer(name, str(pc.dvol.feature), float(pc.dvol.days_per_year),
                        float(pc.dvol.max_stale_days))
    raise InvalidParameterError("eval.methods", name, f"one of {list(PEERS) + list(cfg.eval.forecasters)}")


def build_forecaster(name: str, cfg: DictConfig) -> Forecaster:
    """The forecaster for one method name; ModelUnavailableError when its module is missing."""
    if name in PEERS:
        return build_peer(name, cfg)
    spec = cfg.eval.forecasters.get(name)
    if spec is None:
        raise InvalidParameterError("eval.methods", name, f"one of {list(PEERS) + list(cfg.eval.forecasters)}")
    module, _, func = str(spec).partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModelUnavailableError(f"forecaster {name!r} ({spec}) is not available: {exc}") from exc
    factory = getattr(mod, func, None)
    if factory is None:
        raise ModelUnavailableError(f"forecaster {name!r}: {module} has no {func!r}")
    fc = factory(cfg)
    if not isinstance(fc, Forecaster):
        raise InvalidParameterError(f"eval.forecasters.{name}", spec, "a factory returning a Forecaster")
    return fc
