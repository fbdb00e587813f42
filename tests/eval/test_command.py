import json
from pathlib import Path

import pytest

from aurora_jax.errors import InvalidParameterError
from aurora_jax.eval import command
from aurora_jax.eval.walkforward import WalkForwardSettings


def test_eval_command_end_to_end(make_cfg, tmp_path, capsys):
    cfg = make_cfg("eval.start=2023-01-01", "eval.end=2023-08-06", "eval.step_days=7",
                   "eval.methods=[aurora,garch_t,ewma,bootstrap,dvol_gaussian]",
                   "eval.transfer.start=2023-03-05", "eval.transfer.end=2023-06-25",
                   "eval.transfer.min_target_history=200", "calibration.hmm.enabled=true",
                   # no engine registered and none trained here: aurora is skipped at every date
                   "eval.engine.train_missing=false", f"++model.train.registry_dir={tmp_path / 'registry'}")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = command.run(cfg, [], run_dir)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].strip().endswith("metrics.json")
    path = Path(out[-1].strip())
    assert path == (run_dir / "metrics.json").resolve()
    m = json.loads(path.read_text())
    assert set(metrics["metrics"]) == set(m["metrics"])
    # the machine-readable layout: method -> horizon -> {crps, cov80, cov90, width, n}
    for meth in ("garch_t", "garch_t+conformal", "ewma", "bootstrap", "dvol_gaussian+conformal"):
        for h in ("1", "7", "14"):
            cell = m["metrics"][meth][h]
            assert {"crps", "cov80", "cov90", "width", "n"} <= set(cell)
            assert 0 <= cell["cov80"] <= cell["cov90"] <= 1 and cell["crps"] > 0 and cell["n"] > 0
    assert "aurora" not in m["unavailable"] and m["skipped_dates"]["aurora"] == len(
        WalkForwardSettings.from_config(cfg).schedule()[0])
    assert m["per_regime"]["garch_t"]
    assert m["best_peer"]["1"]["raw"]["method"] in {"garch_t", "ewma", "bootstrap", "dvol_gaussian"}
    assert m["targets"]["candidates"][0]["method"] == "aurora+conformal"
    assert m["targets"]["candidates"][0]["available"] is False
    assert "garch_conformal_nominal" in m["targets"]
    assert 0 <= m["router"]["oos"]["ece"] <= 1
    assert 0 <= m["regimes"]["hmm_agreement"] <= 1
    tv = m["transfer"]
    assert tv["status"] in ("READY", "NOT READY") and tv["target"] == "ETH-USD"
    assert tv["status"] == ("READY" if all(tv["checks"].values()) else "NOT READY")
    assert 0.1 < tv["domain_source"]["xi"] < 1.0 and 0 < tv["domain_target"]["hurst"] < 1
    for f in ("report.md", "scores.csv", "signals.csv", "pit.png", "rolling_coverage.png",
              "coverage_by_regime_horizon.png", "fan_garch_t.png", "conformal/garch_t.json"):
        assert (run_dir / f).exists(), f
    report = (run_dir / "report.md").read_text()
    assert "## Targets" in report and "## What calibration could still gain" in report
    # hindsight recalibration: every scored method and horizon, recalibrated within a group of
    # >= min_n forecasts (the 14 horizons x 32 dates here)
    rc = m["recalibration"]
    assert {"garch_t", "garch_t+conformal", "ewma"} <= set(rc) and "aurora" not in rc
    for h in ("1", "7", "14"):
        cell = rc["garch_t"][h]
        assert cell["n"] == m["metrics"]["garch_t"][h]["n"]
        assert cell["crps"] == pytest.approx(m["metrics"]["garch_t"][h]["crps"])
        for k in ("crps_recal", "crps_recal_regime"):
            assert 0 < cell[k] < 1.2 * cell["crps"]
    assert m["targets"]["recalibration_reach"] == {}  # aurora was not scored


def test_unknown_method_is_an_error(make_cfg, tmp_path):
    cfg = make_cfg("eval.methods=[garch_t,prophet]")
    with pytest.raises(InvalidParameterError, match="eval.methods"):
        command.run(cfg, [], tmp_path)
    assert not (tmp_path / "metrics.json").exists()
