"""One streaming rule: the offline scorer and the live daemon window a series with gaps and NaNs alike."""

from __future__ import annotations

import numpy as np
import pytest

from edge_aae.cli.workstation import open_model
from edge_aae.core.data import assemble_series, load_series
from edge_aae.core.manifest import FP32_MODEL
from edge_aae.core.streaming import StreamRule
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import reading_batches
from edge_aae.gateway.scorer import BundleScorer, OnnxModel
from edge_aae.gateway.stream import AssetStream


def gappy_series(synth_dir, rows=420):
    """The synthetic test stream with a time gap, short and long runs of missing values."""
    base = load_series(synth_dir / "test.csv", max_nan_run=0).slice_rows(0, rows)
    ts, values = base.timestamps.copy(), base.values.copy()
    period = base.sample_period_s
    ts[200:] += 9 * period  # a gap of 10 periods: over the rule's 5
    ts[330:] += 3 * period  # a step of 4 periods: under it, the segment goes on
    values[60, 2] = np.nan  # one missing value drops its reading
    values[61, 0] = np.nan
    values[120:126, :] = np.nan  # six missing readings: a step of 7 periods, a new segment
    return assemble_series("gappy", list(base.channels), ts, values, None, max_nan_run=0, max_gap_factor=5.0)


def test_rule_drops_missing_readings_and_splits_at_gaps():
    ts = np.arange(20, dtype=float)
    ts[10:] += 6
    values = np.ones((20, 2))
    values[3, 1] = np.nan
    kept, segments = StreamRule(5.0).kept_and_segments(ts, values, 1.0)
    assert 3 not in kept
    assert len(kept) == 19
    assert segments == [(0, 9), (9, 19)]


def test_offline_scorer_and_the_daemons_stream_cut_the_same_windows(bundle, synth_dir):
    data = gappy_series(synth_dir)
    offline = BundleScorer(bundle).score(data)
    scorer = OnnxModel.open(bundle)
    b = scorer.bundle
    stream = AssetStream(b.window_len, len(b.channels), b.stride, b.manifest.sample_period_s,
                         b.stream_rule.gap_factor, reorder_tolerance_s=2.0)
    live_ts, live_windows = [], []
    for t, row in zip(data.timestamps, data.values, strict=True):
        if not np.isfinite(row).all():
            continue  # the daemon drops a reading with a missing (null) value
        _, window = stream.push(float(t), row.astype(np.float32))
        if window is not None:
            live_ts.append(t)
            live_windows.append(window)
    np.testing.assert_array_equal(np.array(live_ts), offline.timestamps)
    live_scores = scorer.score_windows(np.stack(live_windows))[0]
    np.testing.assert_allclose(live_scores, offline.score, rtol=1e-6, atol=1e-6)
    # by hand: readings 0-119 less the two with a missing value (one segment: steps of at most 3
    # periods), 126-199 after the six missing ones (a step of 7), 200-419 after the gap (the step
    # of 4 at 330 keeps it going): segments of 118, 74 and 220 readings
    assert len(offline.score) == sum(n - b.window_len + 1 for n in (118, 74, 220))


def test_score_run_and_score_bundle_use_the_same_rule(trained_run, bundle, synth_dir):
    data = gappy_series(synth_dir)
    run, bun = open_model(trained_run), open_model(bundle)
    assert run.stream_rule == bun.stream_rule
    a, b = run.score(data), bun.score(data)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    fp32 = BundleScorer(bundle, FP32_MODEL).score(data)  # the default model may be INT8: compare like with like
    np.testing.assert_allclose(a.score, fp32.score, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(("threads", "batch"), [(1, 25), (2, 100)])
def test_the_live_daemon_scores_what_the_offline_scorer_scores(broker, bundle, synth_dir, tmp_path, threads, batch):
    """With two scoring threads, messages of 100 readings make micro-batches that are split."""
    data = gappy_series(synth_dir)
    offline = BundleScorer(bundle).score(data)
    rec = Recorder(broker.port, "edge-aae/#")
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox")
    cfg.write_text(cfg.read_text().replace("[runtime]\n", f"[runtime]\nthreads = {threads}\n", 1))
    daemon = DaemonProcess(tmp_path, cfg, broker.url)
    try:
        assert rec.wait_for(lambda r: any(m.get("state") == "online" for m in r.json("/status")), 30)
        pub = publisher(broker.port)
        for payload in reading_batches(data, batch):  # NaN travels as null
            pub.publish("edge-aae/gw1/sensors/pump1", payload, qos=1).wait_for_publish(10)
        assert rec.wait_for(lambda r: len(r.json("/pump1/score")) >= len(offline.score), 60), daemon.log()[-2000:]
        live = {m["ts"]: m["score"] for m in rec.json("/pump1/score")}
        assert sorted(live) == offline.timestamps.tolist()
        np.testing.assert_allclose([live[t] for t in offline.timestamps.tolist()], offline.score,
                                   rtol=1e-5, atol=1e-5)
        latent = {m["ts"]: m["latent_score"] for m in rec.json("/pump1/score")}  # every message carries it
        np.testing.assert_allclose([latent[t] for t in offline.timestamps.tolist()], offline.latent_score,
                                   rtol=1e-5, atol=1e-5)
        assert not rec.json("/errors")  # missing values are the rule, not errors
        pub.disconnect()
    finally:
        rec.close()
        daemon.close()
