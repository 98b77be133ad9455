"""End-to-end on real (small) training runs: quality floors, save/load, sampling."""

import json

import numpy as np
import pytest

from edge_aae.core.data import load_series
from edge_aae.core.errors import CorruptModelError, DataError, ModelMismatchError
from edge_aae.core.metrics import auroc
from edge_aae.train.config import TrainConfig
from edge_aae.train.detector import AAEDetector


def test_trained_model_clears_auroc_floor_and_blames_fault_channels(trained_run, synth_dir):
    det = AAEDetector.load(trained_run)
    test = load_series(synth_dir / "test.csv", label_col="label")
    res = det.score(test)
    labels = test.labels[res.ends]
    assert auroc(labels, res.score) >= 0.93
    faults = json.loads((synth_dir / "faults.json").read_text())["faults"]
    tops = np.array(res.top_channel)
    hits, flagged = 0, 0
    for f in faults:
        inside = (res.ends >= f["start"]) & (res.ends < f["end"]) & (res.is_anomaly == 1)
        hits += int(np.isin(tops[inside], f["channels"]).sum())
        flagged += int(inside.sum())
    assert flagged > 0
    assert hits / flagged >= 0.8


def test_threshold_comes_from_normal_data_and_rarely_fires_there(trained_run, synth_dir):
    det = AAEDetector.load(trained_run)
    res = det.score(load_series(synth_dir / "train.csv"))
    assert res.is_anomaly.mean() < 0.02
    assert set(det.thresholds_) == {"pot", "quantile"}


def test_the_report_says_how_many_injected_faults_the_threshold_flags(trained_run):
    from edge_aae.train.selfcheck import KINDS

    check = json.loads((trained_run / "report.json").read_text())["self_check"]
    assert set(check) == set(KINDS)
    assert all(0.0 <= v <= 1.0 for v in check.values())
    # a six-spread step or ramp on one channel of the pump is plainly abnormal
    assert check["level_shift"] >= 0.5
    assert check["drift"] >= 0.5


def test_save_load_gives_identical_scores(trained_run, synth_dir, tmp_path):
    det = AAEDetector.load(trained_run)
    det.save(tmp_path / "copy")
    again = AAEDetector.load(tmp_path / "copy")
    data = load_series(synth_dir / "test.csv")
    a, b = det.score(data), again.score(data)
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.channel_scores, b.channel_scores)
    assert a.threshold == b.threshold


def test_contributions_are_squared_errors_over_a_power_of_their_normal_mean(trained_run):
    """Blame: ``e² / m^BLAME_EXPONENT``; the score's reconstruction part is the order-4 mean of ``e² / m``."""
    import torch

    from edge_aae.train.model import BLAME_EXPONENT, SCORE_POWER

    det = AAEDetector.load(trained_run)
    windows = det.load_calibration()["val"][:64]
    score, blame, latent = det.score_windows(windows)
    g = det.scorer_
    with torch.no_grad():
        err, _ = g.residual_stats(g.scale_input(torch.from_numpy(windows.astype(np.float32))))
    err, m = err.numpy().astype(np.float64), g.channel_scale.numpy().astype(np.float64)
    assert 0.5 < BLAME_EXPONENT < 1.0
    np.testing.assert_allclose(blame, err / m ** BLAME_EXPONENT, rtol=1e-4, atol=1e-7)
    rec_center, rec_scale = float(g.score_stats[0]), float(g.score_stats[1])
    assert SCORE_POWER == 4
    assert g.score_power == 4
    mean4 = (((err / m) ** 4).mean(1)) ** 0.25
    expected = (mean4 - rec_center) / rec_scale + g.latent_weight * latent
    np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-4)
    # the order of blame differs from the error's own order over its normal mean where m differs
    assert not np.array_equal(np.argsort(blame, 1), np.argsort(err / m, 1))


def test_a_run_from_before_the_order_4_score_keeps_its_root_mean_square(trained_run, tmp_path):
    """A ``model.json`` without ``score_power`` was fitted with the RMS: loading it must not change its scores."""
    import shutil

    import torch

    det = AAEDetector.load(trained_run)
    windows = det.load_calibration()["val"][:64]
    old = tmp_path / "old-run"
    shutil.copytree(trained_run, old)
    meta = json.loads((old / "model.json").read_text())
    del meta["normalization"]["score_power"]
    (old / "model.json").write_text(json.dumps(meta))
    legacy = AAEDetector.load(old)
    assert legacy.scorer_.score_power == 2
    score, _, latent = legacy.score_windows(windows)
    g = legacy.scorer_
    with torch.no_grad():
        err, _ = g.residual_stats(g.scale_input(torch.from_numpy(windows.astype(np.float32))))
    ratio = err.numpy().astype(np.float64) / g.channel_scale.numpy().astype(np.float64)
    rms = np.sqrt((ratio ** 2).mean(1))
    expected = (rms - float(g.score_stats[0])) / float(g.score_stats[1]) + g.latent_weight * latent
    np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-4)
    meta["normalization"]["score_power"] = 3
    (old / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptModelError, match="score_power"):
        AAEDetector.load(old)


def test_the_order_4_score_stays_finite_for_wild_errors():
    """Ratios far beyond anything normal are held at a cap: the score saturates instead of overflowing."""
    import torch

    from edge_aae.train.model import RATIO_CAP, power_mean, power_mean_norm

    r = torch.tensor([[1.0, 2.0, 3.0], [1e30, 1e20, 1.0]], dtype=torch.float32)
    out = power_mean_norm(r, 4)
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out[0].item(), (1 + 16 + 81) ** 0.25, rtol=1e-6)
    np.testing.assert_allclose(out[1].item(), 2 ** 0.25 * RATIO_CAP, rtol=1e-5)
    np.testing.assert_allclose(power_mean(r.numpy(), 4), out.numpy() / 3 ** 0.25, rtol=1e-5)


def test_training_is_deterministic_on_cpu(synth_dir):
    cfg = TrainConfig(epochs=2, windows_per_epoch=1500, seed=3)
    data = load_series(synth_dir / "train.csv")
    a = AAEDetector(cfg).fit(data).score_windows(np.zeros((2, cfg.window_len, 8), np.float32) + 1.0)[0]
    b = AAEDetector(cfg).fit(data).score_windows(np.zeros((2, cfg.window_len, 8), np.float32) + 1.0)[0]
    np.testing.assert_array_equal(a, b)


def test_plain_autoencoder_and_mixture_prior_and_mlp_train(synth_dir):
    data = load_series(synth_dir / "train.csv").slice_rows(0, 3000)
    for cfg in (TrainConfig(epochs=2, adversarial_weight=0.0),
                TrainConfig(epochs=2, prior="mixture", arch="mlp")):
        det = AAEDetector(cfg).fit(data)
        assert np.isfinite(det.threshold_)
        assert len(det.report_["history"]) == 2


def test_sample_decodes_prior_into_plausible_windows(trained_run, synth_dir):
    det = AAEDetector.load(trained_run)
    windows = det.sample(64, seed=1)
    assert windows.shape == (64, det.config_.window_len, 8)
    train = load_series(synth_dir / "train.csv").values
    lo, hi = train.min(0), train.max(0)
    span = hi - lo
    inside = ((windows >= lo - 0.25 * span) & (windows <= hi + 0.25 * span)).mean()
    # the adversarial term weighs 0.1 beside reconstruction: codes follow the prior loosely
    # (README, Known limits), so a few decoded prior samples land outside the normal range
    assert inside > 0.9


def test_scoring_with_other_channels_is_refused(trained_run, tmp_path):
    det = AAEDetector.load(trained_run)
    p = tmp_path / "other.csv"
    p.write_text("timestamp,a,b\n" + "\n".join(f"{i},{i},{i}" for i in range(100)))
    with pytest.raises(ModelMismatchError, match="missing channel column"):
        det.score(load_series(p))


def test_too_few_rows(tmp_path):
    p = tmp_path / "short.csv"
    p.write_text("timestamp,a,b\n" + "\n".join(f"{i},{i},{i}" for i in range(20)))
    with pytest.raises(DataError, match="too few rows"):
        AAEDetector(TrainConfig(epochs=1)).fit(load_series(p))


def test_corrupt_run_directory(trained_run, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained_run, bad)
    (bad / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptModelError, match="weights.pt"):
        AAEDetector.load(bad)
    meta = json.loads((bad / "model.json").read_text())
    meta["format_version"] = 99
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptModelError, match="format_version 99"):
        AAEDetector.load(bad)


def test_relative_channels_ignore_a_level_offset_and_export_in_graph(synth_dir, tmp_path):
    from edge_aae.core.errors import ConfigError
    from export.parity import check_fp32
    from export.to_onnx import export_fp32

    train = load_series(synth_dir / "train.csv")
    cfg = TrainConfig(epochs=2, windows_per_epoch=1500, relative_channels="motor_temp_c, bearing_temp_c")
    det = AAEDetector(cfg).fit(train)
    assert det.scorer_.level_mask.tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    windows = det.load_calibration()["val"][:64].copy()
    base = det.score_windows(windows)[0]
    shifted = windows.copy()
    shifted[:, :, 4] += 5.0  # a warmer day: the motor temperature's level moves, its shape does not
    np.testing.assert_allclose(det.score_windows(shifted)[0], base, rtol=1e-4, atol=1e-3)
    export_fp32(det.scorer_, tmp_path / "m.onnx", cfg.window_len, len(det.channels_))
    assert check_fp32(det.scorer_, tmp_path / "m.onnx", windows).passed
    det.save(tmp_path / "run")
    assert AAEDetector.load(tmp_path / "run").scorer_.level_mask.tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    with pytest.raises(ConfigError, match="relative_channels: nope"):
        AAEDetector(TrainConfig(epochs=1, relative_channels="nope")).fit(train)


def test_shift_score_finds_small_sustained_shifts_the_error_score_misses(synth_dir, tmp_path):
    """A level step of half a robust sd over the last 16 samples of one channel."""
    train = load_series(synth_dir / "train.csv")
    base = {"epochs": 2, "windows_per_epoch": 1500}
    error = AAEDetector(TrainConfig(**base)).fit(train)
    shift = AAEDetector(TrainConfig(**base, score_stat="shift", threshold="t2")).fit(train)
    val = shift.load_calibration()["val"]
    assert shift.threshold_ == 1.0
    assert shift.thresholds_["t2"] == 1.0
    s0 = shift.score_windows(val)[0]
    assert (s0 > shift.threshold_).mean() < 0.01  # the T² limit rarely fires on normal windows
    aucs: dict[str, list[float]] = {"error": [], "shift": []}
    top = []
    for ch in range(len(shift.channels_)):
        for name, det in (("error", error), ("shift", shift)):
            stepped = val.copy()
            stepped[:, -16:, ch] += 0.5 * det.scaler_.scale_[ch]
            normal, moved = det.score_windows(val)[0], det.score_windows(stepped)[0]
            aucs[name].append(auroc(np.r_[np.zeros(len(normal)), np.ones(len(moved))], np.r_[normal, moved]))
        stepped = val.copy()
        stepped[:, -16:, ch] += 1.0 * shift.scaler_.scale_[ch]
        top.append(float((shift.score_windows(stepped)[1].argmax(1) == ch).mean()))
    assert np.mean(aucs["shift"]) > 0.95
    assert np.mean(aucs["shift"]) > np.mean(aucs["error"]) + 0.2
    assert np.mean(top) > 0.6  # the contributions name the channel that moved

    shift.save(tmp_path / "run")
    again = AAEDetector.load(tmp_path / "run")
    assert again.config.score_stat == "shift"
    np.testing.assert_allclose(again.score_windows(val[:50])[0], s0[:50], rtol=1e-5, atol=1e-5)


def test_shift_covariance_is_scaled_up_to_what_unseen_normal_windows_show():
    """Validation windows whose T² averages k·p under the reference covariance scale it by k; never down."""
    from edge_aae.train.detector import validation_inflation

    rng = np.random.default_rng(0)
    eye = np.eye(6)
    wide = rng.normal(0.0, 2.0, (4000, 6))  # variance 4 where the reference says 1
    assert validation_inflation(wide, eye) == pytest.approx(4.0, rel=0.05)
    assert validation_inflation(rng.normal(0.0, 0.5, (4000, 6)), eye) == 1.0  # quieter: left alone
    assert validation_inflation(np.empty((0, 6)), eye) == 1.0


def test_a_short_training_set_scales_the_shift_covariance_by_its_validation_windows(synth_dir):
    """400 rows: training windows join the reference, and the T² limit is fitted on a covariance scaled up."""
    train = load_series(synth_dir / "train.csv").slice_rows(0, 400)
    det = AAEDetector(TrainConfig(epochs=2, windows_per_epoch=600, score_stat="shift", threshold="t2")).fit(train)
    assert det.report_ is not None
    k = det.report_["shift_covariance_inflation"]
    assert k >= 1.0
    assert det.shift_inflation_ == k
    # the same model without the scaling: validation windows score k times higher (T² is linear in 1/k)
    val = det.load_calibration()["val"]
    base = det.score_windows(val)[0]
    det.scorer_.shift_precision.mul_(k)
    np.testing.assert_allclose(det.score_windows(val)[0], base * k, rtol=1e-4, atol=1e-5)


def test_t2_threshold_needs_the_shift_score():
    from edge_aae.core.errors import ConfigError

    with pytest.raises(ConfigError, match='needs score_stat = "shift"'):
        TrainConfig(threshold="t2")
    with pytest.raises(ConfigError, match="score_stat must be one of error, shift"):
        TrainConfig(score_stat="nope")
