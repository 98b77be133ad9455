"""Paced publisher and timing listener for ``bench daemon``'s latency phase, each its own process.

The daemon under test shares the machine (two cores in CI) with the broker and the bench's own
clients, so the clients must take little CPU and never share an interpreter lock with each other.
The listener is ``mosquitto_sub`` stamping each score as it arrives (``-F %U``: unix time, ns; a
paho listener parsing each score took a large share of a core at these rates). The publisher is
one ``mosquitto_pub -l -q 1`` per topic, the C client the throughput phase publishes with, fed
line by line through a pipe by this process, which paces the lines and stamps each reading with
``time.time()`` as it writes it (the paho publisher in Python it replaced took 0.31-0.35 of a core
at 1,300 readings/s, against 0.18-0.20 for this one, on the two cores the daemon shares). A line
that waits in the pipe because ``mosquitto_pub`` still waits for the broker's acknowledgement of
the last one counts its wait. One clock, the system's real-time clock, at both ends.

    python -m export.bench.latency_probe listen PORT TOPIC N OUT.json READY TIMEOUT_S
    python -m export.bench.latency_probe publish PORT MESSAGES.jsonl RATE_PER_S OUT.json

``MESSAGES.jsonl``: one ``{"topic", "payload", "key"}`` object per line; ``key`` names the reading
(``asset/ts``), and the listener keys each score by its topic's asset and payload's ``ts``.
``TOPIC`` must match ``ROOT/GATEWAY/anomaly/+/score``: the listener knows it has subscribed once a
marker it publishes under ``_ready`` comes back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

READY_ASSET = "_ready"


def listen(port: int, topic: str, n: int, out: Path, ready: Path, timeout_s: float) -> int:
    """Record the arrival time of each message on ``topic`` until ``n`` came or ``timeout_s`` passed."""
    raw = out.with_suffix(".txt")
    parts = topic.split("/")
    marker = "/".join([*parts[:3], READY_ASSET, *parts[4:]])
    # QoS 0 to the listener: libmosquitto leaves Nagle's algorithm on, and its delayed PUBACKs
    # stalled the broker's in-flight window to it (p50 14 ms at a quarter of the daemon's rate,
    # against 3 ms with QoS 0); what the daemon publishes and how is the same either way
    with raw.open("wb") as f:  # mosquitto_sub flushes after every message
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "0", "-t", topic,
                                "-F", "%U %t %p"], stdout=f)
    try:
        deadline = time.monotonic() + 10
        while READY_ASSET not in raw.read_text(encoding="utf-8", errors="replace"):
            if sub.poll() is not None or time.monotonic() > deadline:
                print("latency listener: mosquitto_sub did not subscribe", file=sys.stderr)
                return 1
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", marker,
                            "-m", json.dumps({"ts": -1.0})], check=False, timeout=10)
            time.sleep(0.1)
        ready.write_text("ready\n", encoding="utf-8")
        deadline = time.monotonic() + timeout_s
        with raw.open("rb") as f:  # count arrivals as they come (every line ends with a newline)
            got = 0
            while time.monotonic() < deadline and sub.poll() is None:
                chunk = f.read()
                got += chunk.count(b"\n") - chunk.count(f"/{READY_ASSET}/".encode())
                if got >= n:
                    break
                time.sleep(0.1)
    finally:
        sub.terminate()
        sub.wait(10)
    arrivals: dict[str, float] = {}
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stamp, msg_topic, payload = line.split(" ", 2)
        asset = msg_topic.split("/")[3]
        if asset != READY_ASSET:
            arrivals[f"{asset}/{float(json.loads(payload)['ts'])!r}"] = float(stamp)
    out.write_text(json.dumps(arrivals), encoding="utf-8")
    return 0


def publish(port: int, messages: Path, rate_per_s: float, out: Path) -> int:
    """Publish the messages at ``rate_per_s`` (QoS 1), recording each one's send time by key."""
    msgs = [json.loads(line) for line in messages.read_text(encoding="utf-8").splitlines() if line]
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-l", "-t"]
    pubs = {t: subprocess.Popen([*cmd, t], stdin=subprocess.PIPE) for t in sorted({m["topic"] for m in msgs})}
    pipes = {t: p.stdin for t, p in pubs.items() if p.stdin is not None}
    lines = [(pipes[m["topic"]], m["key"], m["payload"].encode("utf-8") + b"\n") for m in msgs]
    time.sleep(1.0)  # every client connected before the first stamp
    sent: dict[str, float] = {}
    try:
        start = time.perf_counter()
        for i, (pipe, key, line) in enumerate(lines):
            ahead = i / rate_per_s - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
            sent[key] = time.time()
            pipe.write(line)
            pipe.flush()
    finally:
        for pipe in pipes.values():
            pipe.close()
        for pub in pubs.values():
            pub.wait(30)
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
