"""The gateway's drift monitor: a stream that slowly leaves the training range raises ``drifting``
before the windows over the threshold pile up; a stationary one never does; the state has
hysteresis; a live daemon publishes it retained on ``ROOT/GW/anomaly/ASSET/drift``."""

import numpy as np
import pytest

from edge_aae.core.contract import validation_errors
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from edge_aae.devtools.replay import publish_acked, reading_batches
from edge_aae.gateway.config import MonitorConfig
from edge_aae.gateway.drift import DriftMonitor, Reference
from export.bench.drift import scenario


def test_drifting_before_the_false_alarms_pile_up_and_never_on_a_stationary_stream(bundle):
    stationary, drifting = scenario(bundle, "current_a")
    assert stationary.states == []  # never left ok
    at = drifting.first("drifting")
    assert at is not None
    # The bench's full-size model raises drifting with no window over the threshold yet (BENCHMARKS.md:
    # the latent median moves first). This small test model's training differs in the last bits from
    # one CPU to another, and on some its score crosses the threshold first (at 0.75 sd of the ramp):
    # the alert-rate figure, the lower median over twelve stretches of the horizon, then raises
    # drifting about half a horizon (900 windows) later: 8.7 % of the drifting stream's windows over
    # the threshold, against 0 to 2 % where the latent median came first. Either way well before
    # the over-threshold windows pile up (over 90 % of them come after).
    assert drifting.over_before(at) <= 0.1 * drifting.over_before(None), (at, drifting.over_before(at))
    assert drifting.over_before(None) > 10 * stationary.over_before(None)  # they do pile up later


def test_a_channel_the_model_scores_by_shape_still_shows_as_out_of_range(bundle):
    _, drifting = scenario(bundle, "motor_temp_c")
    at = drifting.first("drifting")
    assert at is not None
    assert "motor_temp_c" in drifting.states[0][2]["outside_share"]


def _monitor(**kw):
    cfg = MonitorConfig(**({"horizon_windows": 100, "min_windows": 50, "clear_windows": 40,
                            "retrain_after_windows": 300} | kw))
    ref = Reference(1e-3, np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    return DriftMonitor(cfg, ref, ["a", "b"])


def feed(mon, n, over=False, latent=0.0, mean=(0.5, 0.5)):
    changes = []
    for i in range(0, n, 10):
        if mon.update(np.full(10, over), np.full(10, latent), np.tile(np.array(mean, float), (10, 1)), float(i)):
            changes.append(mon.state)
    return changes


def test_states_move_with_hysteresis_and_name_the_channel():
    mon = _monitor()
    assert feed(mon, 200) == []
    assert feed(mon, 60, mean=(0.5, 1.5)) == ["drifting"]  # b above its range in over a quarter of the horizon
    payload = mon.payload("pump1", "gw1", {"name": "m", "version": "1"})
    assert payload["state"] == "drifting"
    assert payload["channels"] == ["b"]
    assert feed(mon, 30) == []  # not back under half the limit for clear_windows yet: no flapping
    assert feed(mon, 200) == ["ok"]
    assert feed(mon, 400, latent=5.0) == ["drifting", "retrain"]
    assert feed(mon, 200, over=True, latent=0.0) == []  # still far off: stays retrain


def test_a_live_daemon_publishes_the_drift_state_retained(tmp_path, broker, bundle):
    from edge_aae.core.data import assemble_series
    from edge_aae.train import synth

    base = synth.generate(seed=5, train_rows=7000, test_rows=4800)
    x = base.train[2000:].copy()
    x[:, 1] += np.linspace(0, 6, len(x)) * x[:, 1].std()
    data = assemble_series("s", list(base.channels), base.train_ts[2000:], x, None)
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox",
                       "[monitor]\nhorizon_windows = 600\nmin_windows = 200\npublish_interval_s = 1\n")
    rec = Recorder(broker.port, "edge-aae/gw1/#")
    d = DaemonProcess(tmp_path, cfg, broker.url)
    try:
        assert rec.wait_for(lambda r: bool(r.json("/status")), 30), d.log()
        pub = publisher(broker.port)
        for p in reading_batches(data, 50):
            publish_acked(pub, "edge-aae/gw1/sensors/pump1", p)
        assert rec.wait_for(lambda r: any(m["state"] != "ok" for m in r.json("/drift")), 60), d.log()[-2000:]
        m = next(m for m in rec.json("/drift") if m["state"] != "ok")
        assert m["asset"] == "pump1"
        assert m["gateway"] == "gw1"
        assert {"alert_rate", "target_far", "latent_median", "windows"} <= set(m["figures"])
        assert m["model"]["version"] == "1.0.0"
        assert validation_errors(m, "drift") == []
        retained = Recorder(broker.port, "edge-aae/gw1/anomaly/pump1/drift")
        try:
            assert retained.wait_for(lambda r: any(ret for _, _, ret in r.messages), 10)
        finally:
            retained.close()
        pub.disconnect()
    finally:
        rec.close()
        d.close()


def test_running_counts_give_the_figures_a_full_pass_gives():
    """The horizon's alert rate and outside shares kept as running counts, its latent median and its
    sustained alert rate match a plain pass over the horizon, whatever the block sizes (blocks longer
    than the horizon included; odd and even window counts)."""
    rng = np.random.default_rng(3)
    mon = _monitor(horizon_windows=50)
    for b in [1, 7, 20, 49, 50, 51, 130, 3, 64]:
        over = rng.random(b) < 0.3
        means = rng.normal(0.5, 0.5, size=(b, 2))
        mon.update(over, rng.normal(size=b), means, 0.0)
        n = min(mon.seen, 50)
        f = mon.figures()
        assert f["alert_rate"] == pytest.approx(mon._over[:n].mean(), abs=1e-6)
        share = mon._outside[:n].mean(axis=0)
        assert f["max_outside_share"] == pytest.approx(share.max(), abs=1e-4)
        assert f["latent_median"] == pytest.approx(round(float(np.median(mon._latent[:n])), 4), abs=1e-9)
        order = np.r_[mon._pos:n, 0:mon._pos] if mon.seen > 50 else np.arange(n)  # oldest first
        k = min(12, n)
        rates = sorted(mon._over[order][i * n // k:(i + 1) * n // k].mean() for i in range(k))
        assert f["alert_rate_sustained"] == pytest.approx(rates[(len(rates) - 1) // 2], abs=1e-6)


def test_small_blocks_wait_like_single_windows_and_keep_their_order():
    mon, ref = _monitor(), _monitor()
    rng = np.random.default_rng(4)
    over, latent, means = rng.random(97) < 0.2, rng.normal(size=97), rng.normal(0.5, 0.6, size=(97, 2))
    i = 0
    for b in [1, 3, 1, 1, 5, 2, 30, 1, 4, 49]:
        if b == 1:
            mon.add(bool(over[i]), float(latent[i]), means[i], float(i))
        else:
            mon.add_block(over[i:i + b], latent[i:i + b], means[i:i + b], float(i))
        i += b
    mon.add_block(over[:0], latent[:0], means[:0], float(i))  # flushes nothing new
    ref.update(over, latent, means, float(i))
    assert mon.seen + len(mon._pending) + mon._blocked == 97
    n = mon.seen
    assert np.array_equal(mon._over[:n], ref._over[:n])
    assert np.allclose(mon._latent[:n], ref._latent[:n])


def test_two_bursts_are_not_drift_but_a_rate_that_stays_high_is():
    """Transients put a window length of windows over the threshold at once; the alert rate is judged
    as the lower median over stretches of the horizon, so bursts alone do not raise ``drifting``."""
    mon = _monitor(horizon_windows=600, min_windows=300)
    assert feed(mon, 250) == []
    assert feed(mon, 30, over=True) == []  # 30 of 600 windows: 5 %, 50 x the 0.1 % target
    assert feed(mon, 250) == []
    assert feed(mon, 30, over=True) == []
    assert mon.figures()["alert_rate"] > 20 * 1e-3
    assert feed(mon, 100) == []
    sustained = _monitor(horizon_windows=600, min_windows=300)
    changes = []
    for _ in range(25):  # one window in 20 over, spread out: 5 % everywhere
        if sustained.update(np.array([True] + [False] * 19), np.zeros(20), np.full((20, 2), 0.5), 0.0):
            changes.append(sustained.state)
    assert changes == ["drifting"]
    assert sustained.figures()["alert_rate_sustained"] == pytest.approx(0.05, abs=0.011)
