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
