"""Paced publisher and timing listener for ``bench daemon``'s latency phase, each its own process.

In one Python process the publisher's pacing loop, the listener's callbacks and paho's two
network threads share one interpreter lock, whose switch interval (5 ms) then shows up in the
latency measured: the bench would time itself. Apart, each waits only on its socket. Both stamp
``time.perf_counter()`` (CLOCK_MONOTONIC on Linux: one clock for every process of the machine).

    python -m export.bench.latency_probe listen PORT TOPIC N OUT.json READY TIMEOUT_S
    python -m export.bench.latency_probe publish PORT MESSAGES.jsonl RATE_PER_S OUT.json

``MESSAGES.jsonl``: one ``{"topic", "payload", "key"}`` object per line; ``key`` names the reading
(``asset/ts``), and a listener keys each score by its topic's asset and payload's ``ts``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def listen(port: int, topic: str, n: int, out: Path, ready: Path, timeout_s: float) -> int:
    """Record the arrival time of each message on ``topic`` until ``n`` came or ``timeout_s`` passed."""
    arrivals: dict[str, float] = {}
    done, subscribed = threading.Event(), threading.Event()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        arrivals[f"{msg.topic.split('/')[3]}/{float(json.loads(msg.payload)['ts'])!r}"] = now
        if len(arrivals) >= n:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    if not subscribed.wait(10):
        print("latency listener: no SUBACK from the broker", file=sys.stderr)
        return 1
    ready.write_text("ready\n", encoding="utf-8")
    done.wait(timeout_s)
    client.disconnect()
    client.loop_stop()
    out.write_text(json.dumps(arrivals), encoding="utf-8")
    return 0


def publish(port: int, messages: Path, rate_per_s: float, out: Path) -> int:
    """Publish the messages at ``rate_per_s`` (QoS 1), recording each one's send time by key."""
    msgs = [json.loads(line) for line in messages.read_text(encoding="utf-8").splitlines() if line]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, m in enumerate(msgs):
        ahead = i / rate_per_s - (time.perf_counter() - start)
        if ahead > 0:
            time.sleep(ahead)
        sent[m["key"]] = time.perf_counter()
        client.publish(m["topic"], m["payload"].encode("utf-8"), qos=1)
    time.sleep(0.5)  # let the last PUBACKs come in before the connection closes
    client.disconnect()
    client.loop_stop()
    out.write_text(json.dumps(sent), encoding="utf-8")
    return 0


def main(argv: list[str]) -> int:
    """Entry point (see the module docstring for the arguments)."""
    if argv[:1] == ["listen"] and len(argv) == 7:
        return listen(int(argv[1]), argv[2], int(argv[3]), Path(argv[4]), Path(argv[5]), float(argv[6]))
    if argv[:1] == ["publish"] and len(argv) == 5:
        return publish(int(argv[1]), Path(argv[2]), float(argv[3]), Path(argv[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
