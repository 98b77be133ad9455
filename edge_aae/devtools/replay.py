"""Publish a recorded series as sensor readings over MQTT (demo, tests, benchmarks; torch-free)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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


def messages(data: SensorData, batch: int) -> Iterator[bytes]:
    """:func:`reading_batches`, except that ``batch == 1`` sends single readings (a scalar ``ts``)."""
    for payload in reading_batches(data, batch):
        if batch == 1:
            msg = json.loads(payload)
            payload = json.dumps({"ts": msg["ts"][0], "values": {k: v[0] for k, v in msg["values"].items()}}).encode()
        yield payload


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
    for payload in messages(data, batch):
        client.publish(topic, payload, qos=qos)  # type: ignore[attr-defined]
        n += 1
        sent_rows += batch
        if rows_per_s:
            ahead = sent_rows / rows_per_s - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    return n


@dataclass(frozen=True)
class ReplayPlan:
    """How to pace a replay: ``speed`` times recorded time, or ``rate`` readings per second.

    ``rate = 0`` sends as fast as the broker acknowledges; a ``rate`` overrides ``speed``.
    """

    speed: float = 1.0
    rate: float | None = None
    batch: int = 1
    loop: bool = False

    def readings_per_s(self, sample_period_s: float) -> float | None:
        """Pacing in readings per second (None: unpaced)."""
        if self.rate is not None:
            return self.rate or None
        return self.speed / sample_period_s


def replay(client: object, topic: str, data: SensorData, plan: ReplayPlan,
           progress: Callable[[int, int], None] | None = None,
           stop: Callable[[], bool] = lambda: False) -> int:
    """Publish a series as readings, QoS 1, in order: each message acknowledged before the next.

    With ``plan.loop`` the series starts over after its end, its timestamps moved on by its own
    length (plus one sample period), so a gateway sees time go forward; ``stop`` ends it.
    Missing values travel as ``null``.

    Returns:
        Readings published.

    Raises:
        TimeoutError: the broker stopped acknowledging.

    """
    rows_per_s = plan.readings_per_s(data.sample_period_s)
    span = float(data.timestamps[-1] - data.timestamps[0]) + data.sample_period_s
    sent = 0
    t0 = time.monotonic()
    lap = 0
    while True:
        shifted = data if lap == 0 else dataclasses.replace(data, timestamps=data.timestamps + lap * span)
        for payload in messages(shifted, plan.batch):
            publish_acked(client, topic, payload)
            sent += min(plan.batch, data.n_rows - (sent % data.n_rows))
            if progress is not None:
                progress(sent, data.n_rows)
            if rows_per_s:
                ahead = sent / rows_per_s - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            if stop():
                return sent
        lap += 1
        if not plan.loop:
            return sent
