"""Publish a recorded series as sensor readings over MQTT (demo, tests, benchmarks; torch-free)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import numpy as np

from edge_aae.core.data import SensorData


def reading_batches(data: SensorData, batch: int, sensor_names: list[str] | None = None) -> Iterator[bytes]:
    """JSON payloads ``{"ts": [...], "values": {name: [...]}}`` of ``batch`` rows each, in time order.

    A missing value (NaN) is sent as ``null``: the gateway drops that reading, as offline scoring does.
    """
    names = sensor_names or list(data.channels)
    for i in range(0, len(data.timestamps), batch):
        ts = data.timestamps[i:i + batch]
        values = {n: [round(float(v), 6) if np.isfinite(v) else None for v in data.values[i:i + batch, j]]
                  for j, n in enumerate(names)}
        yield json.dumps({"ts": [float(t) for t in ts], "values": values}).encode("utf-8")


def publish_acked(client: object, topic: str, payload: bytes, timeout_s: float = 30.0) -> None:
    """Publish one QoS 1 message and wait for its PUBACK, waiting out a reconnect first.

    paho re-sends its queue after a reconnect but may slip newer messages in between; a
    publisher that must keep readings in order across broker restarts sends one at a time.

    Raises:
        TimeoutError: the client did not reconnect, or the broker did not acknowledge, in time.

    """
    deadline = time.monotonic() + timeout_s
    while not client.is_connected():  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError(f"not connected to the broker after {timeout_s:.0f} s (publishing to {topic})")
        time.sleep(0.05)
    info = client.publish(topic, payload, qos=1)  # type: ignore[attr-defined]
    info.wait_for_publish(max(0.1, deadline - time.monotonic()))
    if not info.is_published():
        raise TimeoutError(f"no PUBACK for a message to {topic} within {timeout_s:.0f} s")


def publish_series(client: object, topic: str, data: SensorData, batch: int = 1,
                   rows_per_s: float | None = None, qos: int = 1) -> int:
    """Publish every row of ``data`` to ``topic``; paced to ``rows_per_s`` when given.

    Args:
        client: a connected paho ``Client`` with its network loop running.
        topic: ``ROOT/GW/sensors/ASSET``.
        data: the series (channel names as the model knows them).
        batch: rows per message (1 sends single readings with a scalar ``ts``).
        rows_per_s: pacing; None publishes as fast as the client takes them.
        qos: MQTT QoS of the readings.

    Returns:
        The number of messages published.

    """
    t0 = time.monotonic()
    n = 0
    sent_rows = 0
    for payload in reading_batches(data, batch):
        if batch == 1:
            msg = json.loads(payload)
            payload = json.dumps({"ts": msg["ts"][0], "values": {k: v[0] for k, v in msg["values"].items()}}).encode()
        client.publish(topic, payload, qos=qos)  # type: ignore[attr-defined]
        n += 1
        sent_rows += batch
        if rows_per_s:
            ahead = sent_rows / rows_per_s - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    return n
