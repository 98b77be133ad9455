"""Property-based fuzzing of the payload parser: it accepts or rejects with a reason, never crashes."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_aae.gateway.payload import PayloadError, parse_readings

CH = ["a", "b", "c"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)


def check(raw: bytes) -> None:
    try:
        r = parse_readings(raw, CH, {"A": "a"}, max_bytes=100_000, max_readings=1000)
    except PayloadError as exc:
        problem = exc  # a stable reason and a message: what the errors topic carries
    else:
        problem = None
    if problem is not None:
        assert problem.reason
        assert isinstance(problem.detail, str)
        return
    assert r.values.shape == (len(r.ts), len(CH))
    assert np.all(np.isfinite(r.values))
    assert np.all(np.isfinite(r.ts))
    assert np.all(np.diff(r.ts) > 0)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value(value):
    check(json.dumps(value, allow_nan=True).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes(raw):
    check(raw)


reading = st.fixed_dictionaries({
    "ts": st.one_of(st.floats(min_value=-10, max_value=2e9), st.just(float("nan")),
                    st.lists(st.floats(min_value=0, max_value=2e9), max_size=5), st.text(max_size=3)),
    "values": st.dictionaries(st.sampled_from(["a", "b", "c", "A", "zzz", "é\u0000"]),
                              st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                                        st.lists(st.floats(), max_size=5), st.text(max_size=3), st.booleans()),
                              max_size=5),
}, optional={"seq": st.one_of(st.integers(), st.text(max_size=2)), "extra": st.integers()})


@settings(max_examples=600, deadline=None)
@given(reading)
def test_reading_shaped_payloads(msg):
    check(json.dumps(msg, allow_nan=True).encode())


# orjson parses what it accepts; the standard library everything else. Both paths must give the
# same readings, or refuse with the same reason, whatever the payload.
def outcome(raw: bytes, fast: bool, monkeypatch) -> tuple:
    import edge_aae.gateway.payload as payload

    monkeypatch.setattr(payload, "_orjson", payload._orjson if fast else None)
    try:
        r = parse_readings(raw, CH, {"A": "a"}, max_bytes=100_000, max_readings=1000)
    except PayloadError as exc:
        return ("refused", exc.reason)
    return ("accepted", r.ts.tolist(), r.values.tolist(), r.seq, r.missing)


def same_both_ways(raw: bytes) -> None:
    import pytest

    import edge_aae.gateway.payload as payload

    if payload._orjson is None:
        pytest.fail("orjson is a base dependency: it should be installed")
    with pytest.MonkeyPatch.context() as mp:
        fast = outcome(raw, True, mp)
        plain = outcome(raw, False, mp)
    assert fast == plain, raw[:200]


edge_numbers = st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "1e-400", "123456789012345678901234",
                                "-9223372036854775809", "18446744073709551616", "9223372036854775807", "-0",
                                "1E2", "0.1", "1" + "0" * 400, '"\\ud800"', "null", "true"])


@settings(max_examples=300, deadline=None)
@given(st.lists(edge_numbers, min_size=3, max_size=3), st.sampled_from(["ts", "seq", "values"]),
       st.sampled_from(["", "\ufeff", " "]))
def test_orjson_and_the_standard_library_agree_on_edge_numbers(nums, where, prefix):
    ts, seq, vals = "1700000000", None, {"a": "1", "b": "2", "c": "3"}
    if where == "ts":
        ts = nums[0]
    elif where == "seq":
        seq = nums[0]
    else:
        vals = dict(zip(CH, nums, strict=True))
    body = ", ".join(f'"{k}": {v}' for k, v in vals.items())
    tail = f', "seq": {seq}' if seq else ""
    raw = f'{prefix}{{"ts": {ts}, "values": {{{body}}}{tail}}}'
    same_both_ways(raw.encode("utf-8", "surrogatepass"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values | reading)
def test_orjson_and_the_standard_library_agree_on_any_json(value):
    same_both_ways(json.dumps(value, allow_nan=True).encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_orjson_and_the_standard_library_agree_on_any_bytes(raw):
    same_both_ways(raw)


def test_a_batch_message_is_parsed_by_orjson(monkeypatch):
    import edge_aae.gateway.payload as payload

    calls = []
    real = payload._orjson.loads
    monkeypatch.setattr(payload._orjson, "loads", lambda raw: calls.append(len(raw)) or real(raw))
    raw = json.dumps({"ts": [1.7e9, 1.7e9 + 1], "values": {"a": [1.5, 2], "b": [0, 1e-3], "c": [3, 4]}}).encode()
    same_both_ways(raw)
    assert calls, "the fast path was not taken"
