"""Scoring on its own thread while the worker handles the previous batch (a backlog of readings).

The overlapped path must give what the worker scoring each batch itself gives: the same windows,
scores and alerts, per asset in order; an inference error on the scoring thread is counted, not
raised.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edge_aae.core.data import load_series
from edge_aae.devtools.daemon_process import write_config
from edge_aae.gateway.config import load_gateway_config
from edge_aae.gateway.daemon import Daemon, Due, _Item
from edge_aae.gateway.payload import Readings

ASSETS = ("pump1", "pump2")
PER_MESSAGE = 50


def make_daemon(tmp_path: Path, bundle: Path, name: str) -> Daemon:
    cfg = write_config(tmp_path / f"{name}.toml", bundle, tmp_path / f"outbox-{name}", runtime="batch_max = 64")
    return Daemon(load_gateway_config(cfg, {"broker_url": "mqtt://127.0.0.1:1"}))


def record(d: Daemon) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], list[tuple[str, str, float]], list[str]]:
    """Spy on what the daemon hands on: scored blocks, alert events, the threads inference ran on."""
    scored: list[tuple[str, np.ndarray, np.ndarray]] = []
    alerts: list[tuple[str, str, float]] = []
    threads: list[str] = []
    publish, send = d._publish_results, d._send_alert
    score_windows = d.registry.default.scorer.score_windows

    def publish_spy(asset, end_ts, score, *rest):
        scored.append((asset, end_ts.copy(), score.copy()))
        publish(asset, end_ts, score, *rest)

    def send_spy(asset, event, scorer):
        alerts.append((asset, event.event, event.ts))
        send(asset, event, scorer)

    def score_spy(windows):
        threads.append(threading.current_thread().name)
        return score_windows(windows)

    d._publish_results, d._send_alert = publish_spy, send_spy
    d.registry.default.scorer.score_windows = score_spy
    return scored, alerts, threads


def messages(synth_dir: Path, channels: list[str]) -> list[_Item]:
    """The synthetic test series (faults included) as 50-reading messages, the two assets interleaved."""
    test = load_series(synth_dir / "test.csv", label_col="label").select_channels(channels)
    n = 3000
    items = []
    for start in range(0, n, PER_MESSAGE):
        for k, asset in enumerate(ASSETS):
            part = slice(start + k * n, start + k * n + PER_MESSAGE)
            items.append(_Item(asset, Readings(test.timestamps[part].astype(np.float64),
                                               test.values[part].astype(np.float32))))
    return items


def per_asset(scored: list[tuple[str, np.ndarray, np.ndarray]], asset: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [(ts, s) for a, ts, s in scored if a == asset]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_a_backlog_is_scored_on_the_scoring_thread_with_the_same_results(tmp_path, bundle, synth_dir):
    one = make_daemon(tmp_path, bundle, "one")
    overlapped = make_daemon(tmp_path, bundle, "overlapped")
    items = messages(synth_dir, one.registry.default.scorer.channels)
    scored_one, alerts_one, threads_one = record(one)
    scored_ov, alerts_ov, threads_ov = record(overlapped)

    for item in items:  # one message per worker cycle, nothing waiting: scored on the worker
        due = Due()
        one._ingest([item], due)
        if due:
            one._score(due)
    due = Due()
    overlapped._ingest(items, due)  # a backlog: every batch but the last goes to the scoring thread
    overlapped._score(due)
    assert not overlapped._in_flight

    assert set(threads_one) == {threading.current_thread().name}
    assert sum(t.startswith("edge-aae-infer") for t in threads_ov) >= len(threads_ov) - 2
    for asset in ASSETS:
        ts_one, s_one = per_asset(scored_one, asset)
        ts_ov, s_ov = per_asset(scored_ov, asset)
        assert len(ts_one) == 3000 - one.registry.default.scorer.window_len + 1
        np.testing.assert_array_equal(ts_ov, ts_one)  # every window, in order
        np.testing.assert_allclose(s_ov, s_one, rtol=1e-5, atol=1e-6)
    assert alerts_one, "the test series' faults raise alerts"
    assert alerts_ov == alerts_one
    assert overlapped.stats.counts["windows_scored"] == one.stats.counts["windows_scored"]
    overlapped._shutdown_scoring()


def test_an_inference_error_on_the_scoring_thread_is_counted(tmp_path, bundle, synth_dir):
    d = make_daemon(tmp_path, bundle, "broken")
    items = messages(synth_dir, d.registry.default.scorer.channels)[:8]

    def broken(_windows):
        raise RuntimeError("session gone")

    d.registry.default.scorer.score_windows = broken
    due = Due()
    d._ingest(items, due)
    d._score(due)
    windows = 4 * (2 * PER_MESSAGE) - 2 * (d.registry.default.scorer.window_len - 1)
    assert d.stats.drops["inference_error"] == windows
    assert "windows_scored" not in d.stats.counts
    d._shutdown_scoring()


def test_the_batch_in_flight_is_handled_before_feedback_applies(tmp_path, bundle, synth_dir):
    d = make_daemon(tmp_path, bundle, "feedback")
    items = messages(synth_dir, d.registry.default.scorer.channels)[:6]
    due = Due()
    d._ingest(items[:4], due)  # two messages of each asset: the first three go out as one batch
    if due:
        d._score(due, backlog=True)  # as when more readings wait
    assert d._in_flight
    d._apply_feedback()  # nothing came: the batch stays in flight
    assert d._in_flight
    d._feedback_in.put(b'{"id": "m1", "command": "mute", "asset": "pump1", "minutes": 5}')
    d._apply_feedback()  # a mute applies after the windows scored before it arrived
    assert not d._in_flight
    assert d.stats.counts["windows_scored"] == 4 * PER_MESSAGE - 2 * (d.registry.default.scorer.window_len - 1)
    d._shutdown_scoring()
