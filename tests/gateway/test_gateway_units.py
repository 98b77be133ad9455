"""Gateway building blocks without a broker: payloads, ring buffer, alert hysteresis, outbox, config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_aae.core.alerting import AlertTracker, top_channels
from edge_aae.core.errors import ConfigError
from edge_aae.gateway.config import device_problems, load_gateway_config, parse_broker_url, read_gateway_config
from edge_aae.gateway.outbox import Outbox
from edge_aae.gateway.payload import PayloadError, parse_readings
from edge_aae.gateway.stream import AssetStream

CH = ["a", "b"]


def parse(obj, **kw):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return parse_readings(raw, CH, kw.pop("channel_map", {}), max_bytes=kw.pop("max_bytes", 10000),
                          max_readings=100)


def test_payload_single_and_batch_with_mapping():
    r = parse({"ts": 10.5, "values": {"A": 1, "b": 2.5}, "seq": 3}, channel_map={"A": "a"})
    assert r.ts.tolist() == [10.5]
    assert r.values.tolist() == [[1.0, 2.5]]
    assert r.seq == 3
    r = parse({"ts": [1, 2, 3], "values": {"a": [1, 2, 3], "b": [4, 5, 6]}})
    assert r.values.shape == (3, 2)
    assert r.values[:, 1].tolist() == [4, 5, 6]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "invalid_json"),
    (b"\xff\xfe", "invalid_json"),
    (b"[1, 2]", "not_object"),
    (b'"text"', "not_object"),
    ({"ts": 1, "values": {"a": 1}}, "missing_channel"),
    ({"ts": 1, "values": {"a": 1, "b": 2, "zzz": 3}}, "unknown_channel"),
    ({"ts": [1, 2], "values": {"a": [1, 2], "b": [1]}}, "length_mismatch"),
    ({"ts": 1, "values": {"a": "x", "b": 2}}, "non_numeric"),
    ({"ts": 1, "values": {"a": True, "b": 2}}, "non_numeric"),
    (b'{"ts": 1, "values": {"a": NaN, "b": 2}}', "non_finite"),
    (b'{"ts": 1, "values": {"a": Infinity, "b": 2}}', "non_finite"),
    ({"ts": 1, "values": {"a": 1e300, "b": 2}}, "non_finite"),
    ({"ts": [2, 1], "values": {"a": [1, 2], "b": [1, 2]}}, "timestamps_backwards"),
    ({"ts": "now", "values": {"a": 1, "b": 2}}, "bad_timestamp"),
    ({"ts": 1, "values": [1, 2]}, "bad_field"),
    ({"ts": 1, "values": {"a": 1, "b": 2}, "extra": 1}, "bad_field"),
    ({"values": {"a": 1, "b": 2}}, "bad_field"),
    (b"[" * 100000 + b"]" * 100000, "oversized"),
])
def test_payload_rejections_name_the_reason(payload, reason):
    with pytest.raises(PayloadError) as exc:
        parse(payload, max_bytes=5000)
    assert exc.value.reason == reason


def test_payload_deep_nesting_is_rejected_not_crashing():
    with pytest.raises(PayloadError):
        parse(b"[" * 4000 + b"]" * 4000, max_bytes=10**6)


def stream(window_len=4, stride=1):
    return AssetStream(window_len, 1, stride, sample_period_s=1.0, gap_factor=5, reorder_tolerance_s=2.5)


def feed(s, ts_list):
    outs, wins = [], []
    for t in ts_list:
        o, w = s.push(float(t), np.array([t], np.float32))
        outs.append(o)
        if w is not None:
            wins.append(w[:, 0].tolist())
    return outs, wins


def test_stream_windows_every_stride():
    _, wins = feed(stream(stride=2), range(1, 9))
    assert wins == [[1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7, 8]]


def test_stream_duplicates_late_reorder_and_gaps():
    s = stream()
    outs, wins = feed(s, [1, 2, 4, 3, 3, 5, 0.5, 20, 21, 22, 23])
    assert outs[4] == "duplicate"
    assert outs[6] == "late"
    assert outs[7] == "gap_reset"
    assert wins[0] == [1, 2, 3, 4]  # 3 placed in order
    assert wins[-1] == [20, 21, 22, 23]  # never spans the gap
    assert all(w == sorted(w) for w in wins)


def test_stream_too_old_for_tolerance_is_late():
    outs, _ = feed(stream(), [10, 11, 12, 13, 14, 10.5])
    assert outs[-1] == "late"


def test_alert_k_of_n_clear_after_m_and_cooldown():
    t = AlertTracker(k=2, n=3, m=2, min_duration_s=0, cooldown_s=100)
    cs = np.array([3.0, 1.0])
    seq = [0, 5, 0, 5, 5, 0, 0, 5, 5, 5]
    events = [(i, e.event) for i, s in enumerate(seq)
              if (e := t.update(float(i), float(s), 1.0, cs, CH)) is not None]
    assert events == [(3, "raised"), (6, "cleared")]  # cooldown blocks the second episode


def test_alert_min_duration_holds_clearing():
    t = AlertTracker(k=1, n=1, m=1, min_duration_s=5, cooldown_s=0)
    cs = np.array([1.0, 1.0])
    kinds = [e.event for i, s in enumerate([5, 0, 0, 0, 0, 0, 0])
             if (e := t.update(float(i), float(s), 1.0, cs, CH)) is not None]
    assert kinds == ["raised", "cleared"]
    assert t.active is None


def test_top_channels_shares_sum_to_one():
    top = top_channels(np.array([1.0, 3.0, 0.0, 4.0]), ["w", "x", "y", "z"], 4)
    assert [c["channel"] for c in top[:2]] == ["z", "x"]
    assert sum(c["share"] for c in top) == pytest.approx(1.0, abs=1e-3)


def test_outbox_survives_restart_and_acks(tmp_path):
    box = Outbox(tmp_path / "ob", max_messages=10)
    k1 = box.put("t/1", b'{"id": 1}')
    box.put("t/2", b'{"id": 2}')
    box.ack(k1)
    (tmp_path / "ob" / "000000000099.tmp").write_bytes(b"half-written")
    again = Outbox(tmp_path / "ob", max_messages=10)
    assert [m.topic for m in again.pending()] == ["t/2"]
    assert not list((tmp_path / "ob").glob("*.tmp"))
    assert again.put("t/3", b"{}") > again.keys()[0]


def test_outbox_bound_drops_oldest(tmp_path):
    box = Outbox(tmp_path, max_messages=10)
    for i in range(13):
        box.put("t", json.dumps({"i": i}).encode())
    assert len(box) == 10
    assert box.dropped == 3
    assert json.loads(box.pending()[0].payload)["i"] == 3


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(text)
    return p


def test_config_lists_every_problem_with_keys(tmp_path):
    cfg, problems = read_gateway_config(write(tmp_path, """
gateway_id = "gw/1"
colour = "red"
[broker]
port = 99999
password_env = "X"
[runtime]
threads = "two"
[alerting]
k = 5
n = 3
[publish]
scores = "sometimes"
"""))
    text = "\n".join(problems)
    for key in ("colour: unknown key", "runtime.threads: expected int", "broker.port", "gateway_id",
                "alerting.k / alerting.n", "publish.scores", "a password needs a username", "models:"):
        assert key in text, key
    assert all(p.startswith(str(tmp_path / "gw.toml")) for p in problems)


def test_config_packet_limit_must_hold_a_reading_message(tmp_path):
    _, problems = read_gateway_config(write(tmp_path, """
gateway_id = "gw1"
[models]
default = "b"
[broker]
max_packet_bytes = 100000
[stream]
max_payload_bytes = 200000
"""))
    assert any("broker.max_packet_bytes" in p and "stream.max_payload_bytes = 200000" in p for p in problems), problems
    _, problems = read_gateway_config(write(tmp_path, 'gateway_id = "gw1"\n[models]\ndefault = "b"\n'
                                                      '[broker]\nmax_packet_bytes = 1000\n'))
    assert any("broker.max_packet_bytes: 1000 <" in p for p in problems), problems


def test_config_overrides_and_relative_paths(tmp_path):
    p = write(tmp_path, 'gateway_id = "gw1"\n[models]\ndefault = "bundles/pump"\n')
    cfg, problems = read_gateway_config(p, {"broker_url": "mqtts://broker.example:8884", "gateway_id": "gw9"})
    assert not problems
    assert device_problems(cfg) == [f"models.default: {tmp_path / 'bundles/pump'} is not a bundle (no manifest.json)"]
    assert (cfg.broker.host, cfg.broker.port, cfg.broker.tls) == ("broker.example", 8884, True)
    assert cfg.gateway_id == "gw9"
    assert cfg.models.default == str(tmp_path / "bundles/pump")


def test_config_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_gateway_config(write(tmp_path, "gateway_id = \n"))
    with pytest.raises(ConfigError, match="no such config file"):
        load_gateway_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("url", ["http://x:1", "mqtt://:1883", "mqtt://host:notaport"])
def test_broker_url_errors(url):
    from edge_aae.core.errors import UsageError

    with pytest.raises(UsageError, match="--broker"):
        parse_broker_url(url)


def test_alert_tracker_matches_a_brute_force_reference():
    rng = np.random.default_rng(1)
    cs = np.array([1.0, 2.0])
    for _ in range(20):
        k, n, m = int(rng.integers(1, 4)), 4, int(rng.integers(1, 4))
        k = min(k, n)
        scores = (rng.random(300) < 0.35).astype(float) * 2
        t = AlertTracker(k, n, m, 0, 0)
        got = [(i, e.event) for i, s in enumerate(scores) if (e := t.update(float(i), s, 1.0, cs, CH))]
        want, recent, active, under = [], [], False, 0
        for i, s in enumerate(scores):
            recent = ([*recent, s > 1][-n:])
            if not active and sum(recent) >= k:
                active, under = True, 0
                want.append((i, "raised"))
            elif active:
                under = 0 if s > 1 else under + 1
                if under >= m:
                    active, recent = False, []
                    want.append((i, "cleared"))
        assert got == want


AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse4_1 avx avx2 fma avx512f avx512bw\n"


@pytest.mark.parametrize(("machine", "cpuinfo", "exact"), [
    ("x86_64", AVX2_ONLY, True),  # u8s8 pairs summed in 16 bits: full 8-bit weights can overflow
    ("x86_64", AVX2_ONLY.replace("avx512bw", "avx512bw avx512_vnni"), False),
    ("x86_64", AVX2_ONLY.replace("avx2", "avx2 avx_vnni"), False),
    ("x86_64", None, True),  # cpuinfo unreadable: the safe choice
    ("aarch64", None, False),
])
def test_exact_int8_kernels_only_where_the_cpu_needs_them(machine, cpuinfo, exact):
    from edge_aae.gateway.scorer import exact_int8_needed

    assert exact_int8_needed(machine, cpuinfo) is exact


def test_the_gateway_session_scores_like_the_exact_int8_kernels(bundle, synth_dir):
    import onnxruntime as ort

    from edge_aae.core.data import load_series
    from edge_aae.core.windows import gather_windows
    from edge_aae.gateway.bundle import open_bundle
    from edge_aae.gateway.scorer import make_session

    b = open_bundle(bundle)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.x64quantprecision", "1")
    exact = ort.InferenceSession(str(b.model_path), sess_options=so, providers=["CPUExecutionProvider"])
    data = load_series(synth_dir / "test.csv").select_channels(b.channels)  # normal rows and faults
    ends = np.linspace(b.window_len - 1, len(data.timestamps) - 1, 512).astype(int)
    x = gather_windows(data.values.astype(np.float32), ends, b.window_len)
    ours = make_session(b.model_path).run(None, {"window": x})
    for got, want in zip(ours, exact.run(None, {"window": x}), strict=True):
        np.testing.assert_array_equal(got, want)
