import numpy as np
import pandas as pd

from aurora_jax.calibrate.vol_regime import REGIMES, VolRegimeClassifier


def test_labels_on_real_btc(btc, cal_cfg):
    clf = VolRegimeClassifier.from_config(cal_cfg.regime)
    out = clf.classify(btc.returns, btc.iv)
    lab = out["label"][out["state"] >= 0]
    shares = lab.value_counts(normalize=True)
    assert set(shares.index) == set(REGIMES)
    assert (shares > 0.15).all()  # every regime is used
    # no daily flipping: every completed run lasts at least min_dwell days
    s = out["state"][out["state"] >= 0].to_numpy()
    change = np.flatnonzero(np.diff(s) != 0)
    assert (np.diff(change) >= clf.min_dwell).all()
    # the March 2020 crash and the calm of mid-2023 are where they should be
    assert out.loc["2020-03-20":"2020-03-31", "label"].eq("volatile").all()
    assert out.loc["2023-07-15":"2023-08-10", "label"].eq("calm").mean() > 0.8
    # realised vol: annualised %, BTC typically 30..150
    assert 20 < out["rv"].median() < 120


def test_classifier_is_causal(btc, cal_cfg):
    clf = VolRegimeClassifier.from_config(cal_cfg.regime)
    r = btc.returns.loc[:"2021-06-30"]
    full = clf.classify(r, btc.iv)
    cut = pd.Timestamp("2021-01-01", tz="UTC")
    rng = np.random.default_rng(0)
    changed = r.copy()
    after = changed.index > cut
    changed[after] = changed[after] * 5 + rng.normal(0, 0.05, after.sum())
    alt = clf.classify(changed, btc.iv)
    before = full.index <= cut
    assert full.loc[before, "label"].equals(alt.loc[before, "label"])
    assert not full.loc[~before, "label"].equals(alt.loc[~before, "label"])
    assert clf.label_at(r, btc.iv, cut) == full.loc[cut, "label"]


def test_implied_vol_enters_the_score(btc, cal_cfg):
    clf = VolRegimeClassifier.from_config(cal_cfg.regime)
    with_iv = clf.features(btc.returns, btc.iv)
    without = clf.features(btc.returns, None)
    late = with_iv.index > pd.Timestamp("2023-06-01", tz="UTC")
    assert with_iv.loc[late, "rank_iv"].notna().all()
    assert not np.allclose(with_iv.loc[late, "score"], without.loc[late, "score"])
    early = with_iv.index < pd.Timestamp("2022-01-01", tz="UTC")
    np.testing.assert_allclose(with_iv.loc[early, "score"].dropna(), without.loc[early, "score"].dropna())
