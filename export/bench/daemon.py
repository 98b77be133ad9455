"""Daemon throughput, latency and memory, side by side with a bare paho subscriber.

One local mosquitto, the same C publisher (``mosquitto_pub -l``, one process per asset), in one run:
    1. bare: a paho subscriber that only parses each reading's JSON;
    2. daemon: ``edge-aae serve`` (a child process) from readings to published scores.
Both get the same stream of single-reading messages (QoS 1) over ``n_assets`` assets, as fast
as the publishers can send (readings of the synthetic pump's normal run when the model is the
pump's); the rate is outputs received per second at the far end. Then the
daemon gets the stream paced at half its measured rate, and each score's arrival is matched
to its reading's publish time for latency percentiles (one paced `mosquitto_pub -l` per asset and a `mosquitto_sub`
listener, each its own process: :mod:`export.bench.latency_probe`). RSS is sampled from /proc.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

try:
    import orjson
except ImportError:  # pragma: no cover - a base dependency; the daemon then parses with json too
    orjson = None  # type: ignore[assignment]

from edge_aae.core.errors import EdgeAAEError
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.gateway.bundle import open_bundle
from edge_aae.gateway.config import RuntimeConfig
from edge_aae.gateway.memtrim import TRIM_AFTER_S  # not the daemon module: this process must not map onnxruntime
from export.bench.common import process_memory, sample_rss

log = logging.getLogger(__name__)
ROOT, GW = "edge-aae", "bench"
PAIRS = 3  # bare subscriber and daemon flat out, in turn
TWO_THREAD_BATCH_MAX = 512  # the batch phase's second run: two scoring threads, larger micro-batches


def parse_json(raw: bytes | bytearray) -> Any:
    """The bare subscriber's parse: orjson as the daemon uses it where installed (a fair baseline)."""
    return orjson.loads(raw) if orjson is not None else json.loads(raw)


def _client(port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


class _Counter:
    """Counts messages on a filter; optionally parses them (or keeps the last one parsed)."""

    def __init__(self, port: int, topic: str, parse: bool, keep_last: bool = False) -> None:
        self.n = 0
        self.last_payload: dict[str, Any] | None = None
        self._keep_last = keep_last
        self.first = self.last = 0.0
        self._parse = parse
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._ready.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise EdgeAAEError("benchmark subscriber: no SUBACK from the broker")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if self._keep_last:
            self.last_payload = json.loads(msg.payload)
        if self._parse:
            parse_json(msg.payload)
        if not self.n:
            self.first = now
        self.n += 1
        self.last = now

    def wait(self, n: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.n < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.n >= n

    def rate(self) -> float:
        return self.n / (self.last - self.first) if self.last > self.first else 0.0

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _values(channels: list[str], rows: int, seed: int) -> np.ndarray:
    """``(rows, C)`` readings: the synthetic pump's normal run where the model is the pump's, else noise.

    Normal readings keep the alert trackers and the drift monitor on their everyday path (a
    stream of pure noise would put every window over the threshold).
    """
    from edge_aae.train import synth

    if set(channels) <= set(synth.CHANNELS):
        train = synth.generate(seed, train_rows=max(rows, 1000), test_rows=2400, faults_per_kind=1).train
        return train[:rows, [synth.CHANNELS.index(c) for c in channels]]
    return np.random.default_rng(seed).normal(size=(rows, len(channels)))


def _messages(channels: list[str], n_assets: int, n_readings: int, t0: float) -> list[tuple[str, bytes, float]]:
    """Single-reading messages, assets taking turns (asset ``k`` reads the series ``37 k`` rows on)."""
    per_asset = n_readings // n_assets
    x = np.round(_values(channels, per_asset + 37 * n_assets, 0), 4)
    out = []
    for i in range(per_asset):
        for a in range(n_assets):
            ts = t0 + i
            values = dict(zip(channels, x[i + 37 * a].tolist(), strict=True))
            out.append((f"a{a}", json.dumps({"ts": ts, "values": values}).encode(), ts))
    return out


def _batch_messages(channels: list[str], n_assets: int, n_readings: int, batch: int,
                    t0: float) -> list[tuple[str, bytes, float]]:
    """``batch`` readings per message (the contract's array form), assets taking turns."""
    per_asset = n_readings // n_assets
    x = np.round(_values(channels, per_asset + 37 * n_assets, 1), 4)
    out = []
    for start in range(0, per_asset, batch):
        stop = min(start + batch, per_asset)
        ts = (t0 + np.arange(start, stop)).tolist()
        for a in range(n_assets):
            block = x[start + 37 * a:stop + 37 * a]
            values = {c: block[:, j].tolist() for j, c in enumerate(channels)}
            out.append((f"a{a}", json.dumps({"ts": ts, "values": values}).encode(), ts[0]))
    return out


def c_publish(port: int, topic: str, msgs: list[tuple[str, bytes, float]], tmp: Path) -> float:
    """Publish with ``mosquitto_pub -l -q 1``, one process per asset reading a prepared file; seconds taken.

    A C publisher per asset, so that the publisher is not what the rates measure. The messages
    of each asset keep their order; ``topic`` holds ``{asset}``.
    """
    by_asset: dict[str, list[bytes]] = {}
    for asset, payload, _ in msgs:
        by_asset.setdefault(asset, []).append(payload)
    files = []
    for asset, payloads in by_asset.items():
        f = tmp / f"pub-{asset}.jsonl"
        f.write_bytes(b"\n".join(payloads) + b"\n")
        files.append((asset, f))
    t0 = time.perf_counter()
    procs = []
    for asset, f in files:
        with f.open("rb") as stdin:
            procs.append(subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-l",
                                           "-t", topic.format(asset=asset), "-i", f"bench-pub-{asset}"],
                                          stdin=stdin, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode:
            raise EdgeAAEError(f"mosquitto_pub failed ({p.returncode}): {err.decode(errors='replace')[-300:]}")
    return time.perf_counter() - t0


FLAT_OUT_ALERTING = "[alerting]\nk = 50\nn = 50\n"  # throughput, not an alert storm, is measured


def _serve(bundle_dir: Path, tmp: Path, broker: Mosquitto, gateway: str, sections: str) -> subprocess.Popen[bytes]:
    """``edge-aae serve`` as ``gateway`` with its own outbox, the bundle and extra TOML ``sections``.

    Its stderr goes to ``tmp/daemon-GATEWAY.log``.
    """
    cfg = tmp / f"{gateway}.toml"
    cfg.write_text(f'gateway_id = "{gateway}"\n[models]\ndefault = "{bundle_dir.resolve()}"\n'
                   f'[outbox]\ndir = "{tmp / f"outbox-{gateway}"}"\n{sections}')
    return subprocess.Popen([sys.executable, "-m", "edge_aae.cli", "serve", "--config", str(cfg),
                             "--broker", broker.url], stdout=subprocess.DEVNULL,
                            stderr=open(tmp / f"daemon-{gateway}.log", "wb"))  # noqa: SIM115


def _flat_out_daemon(bundle_dir: Path, tmp: Path, broker: Mosquitto, n_readings: int, stop: threading.Event,
                     rss: list[float]) -> tuple[subprocess.Popen[bytes], _Counter]:
    """``edge-aae serve`` for the flat-out and paced phases, online, its RSS sampled into ``rss`` from the start.

    Returns the daemon and a counter of its status messages; a daemon that does not come online is stopped.
    """
    daemon = _serve(bundle_dir, tmp, broker, GW, f'[runtime]\nbatch_wait_ms = 5\nqueue_max_readings = '
                    f'{2 * n_readings}\n[publish]\nstats_interval_s = 1\n{FLAT_OUT_ALERTING}')
    threading.Thread(target=sample_rss, args=(daemon.pid, stop, rss), daemon=True).start()
    status = _Counter(broker.port, f"{ROOT}/{GW}/status", parse=False)
    if not status.wait(1, 60):
        daemon.terminate()
        daemon.wait(30)
        raise EdgeAAEError(f"daemon did not come online: {(tmp / f'daemon-{GW}.log').read_text()[-500:]}")
    return daemon, status


def finish_time(samples: list[tuple[float, int]], expected: int) -> float:
    """When the ``expected``-th window was scored, from ``(time, windows scored)`` samples in time order.

    The first sample is the start (count 0). The daemon reports once a second, and one that reached
    ``expected`` may come up to a second after the last window (10-25 % of a 4-7 s run counted as
    idling): the time is extrapolated from the last sample short of ``expected`` at the rate up to
    it. With no such sample (a run shorter than a report), the first sample that reached it.
    """
    short = [(t, n) for t, n in samples[1:] if 0 < n < expected]
    if short:
        t0, n0 = short[-1]
        return samples[0][0] + (t0 - samples[0][0]) * expected / n0
    return next((t for t, n in samples if n >= expected), samples[-1][0])


def batch_phase(bundle_dir: Path, tmp: Path, broker: Mosquitto, channels: list[str], window_len: int,
                n_readings: int = 200_000, n_assets: int = 8, batch: int = 100, threads: int = 1,
                batch_max: int | None = None) -> dict[str, Any]:
    """A fresh daemon (stride 1, scores not published) fed ``batch``-reading messages flat out.

    ``threads`` and ``batch_max`` set ``runtime.threads`` and ``runtime.batch_max`` (None: the
    default). Counts windows scored and readings dropped from the daemon's own stats.
    """
    runtime = f"threads = {threads}\n" + (f"batch_max = {batch_max}\n" if batch_max else "")
    daemon = _serve(bundle_dir, tmp, broker, f"{GW}b", f'[runtime]\n{runtime}batch_wait_ms = 5\nqueue_max_readings = '
                    f'{2 * n_readings}\n[publish]\nstats_interval_s = 1\nscores = "none"\n{FLAT_OUT_ALERTING}')
    status = _Counter(broker.port, f"{ROOT}/{GW}b/status", parse=False, keep_last=True)
    try:
        if not status.wait(1, 60):
            raise EdgeAAEError(f"daemon did not come online: {(tmp / f'daemon-{GW}b.log').read_text()[-500:]}")
        pub = _client(broker.port, "bench-batch-publisher")
        # timestamps after the other phases and not in the future (the daemon refuses those)
        msgs = _batch_messages(channels, n_assets, n_readings, batch, 1.7e9 + 3e6)
        expected = n_assets * (n_readings // n_assets - window_len + 1)
        t_start, wall_start = time.perf_counter(), time.time()
        for asset, payload, _ in msgs:
            pub.publish(f"{ROOT}/{GW}b/sensors/{asset}", payload, qos=1)
        published_s = time.perf_counter() - t_start

        def stats() -> dict[str, Any]:
            last = status.last_payload or {}
            return dict(last.get("stats", {})) if last.get("state") == "online" else {}

        # (daemon's wall-clock time of the status, windows scored by then): the status comes once a
        # second, so the time the last window was scored is extrapolated from the last one before it
        samples: list[tuple[float, int]] = [(wall_start, 0)]
        deadline = time.monotonic() + 300
        quiet_since = time.monotonic()
        while samples[-1][1] < expected and time.monotonic() < deadline:
            last = status.last_payload or {}
            n = int(stats().get("windows_scored", 0))
            if last.get("state") == "online" and float(last.get("ts", 0)) > samples[-1][0] and n > samples[-1][1]:
                samples.append((float(last["ts"]), n))
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 5:  # no progress for 5 s: all that will come came
                break
            time.sleep(0.02)
        done_s = finish_time(samples, expected) - wall_start
        st = stats()
        log.info("batch phase stats: %s", st)
        pub.disconnect()
        scored = int(st.get("windows_scored", 0))
        return {"readings": n_readings, "batch": batch, "published_s": published_s,
                "readings_per_s": n_readings / done_s, "windows_scored": scored, "expected": expected,
                "queue_full": int(st.get("drops", {}).get("queue_full", 0)),
                "over_share": int(st.get("drops", {}).get("over_share", 0)),
                "inference_ms_p50": st.get("inference_ms_p50"), "threads": threads,
                "batch_max": batch_max or RuntimeConfig().batch_max}
    finally:
        status.close()
        daemon.terminate()
        daemon.wait(30)


def idle_phase(bundle_dir: Path, tmp: Path, broker: Mosquitto, seconds: float = 60.0) -> float:
    """CPU share (%) of a daemon with default settings and no readings, over ``seconds``."""
    daemon = _serve(bundle_dir, tmp, broker, f"{GW}i", "")
    status = _Counter(broker.port, f"{ROOT}/{GW}i/status", parse=False)
    try:
        if not status.wait(1, 60):
            raise EdgeAAEError("idle daemon did not come online")
        time.sleep(3)  # past start-up

        def cpu_s() -> float:
            fields = Path(f"/proc/{daemon.pid}/stat").read_text().split()
            return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")

        c0, t0 = cpu_s(), time.monotonic()
        time.sleep(seconds)
        return 100.0 * (cpu_s() - c0) / (time.monotonic() - t0)
    finally:
        status.close()
        daemon.terminate()
        daemon.wait(30)


def paced_latencies(port: int, msgs: list[tuple[str, bytes, float]], rate_per_s: float, expected: int,
                    tmp: Path) -> np.ndarray:
    """Milliseconds from each reading's publish to its score's arrival, publisher and listener apart.

    Both run as their own processes (:mod:`export.bench.latency_probe`): in this one, their
    threads and the interpreter lock would add the bench's own delays to the daemon's. The
    listener is ``mosquitto_sub``: a paho listener at these rates took CPU the daemon needs.
    """
    probe = [sys.executable, "-m", "export.bench.latency_probe"]
    lines = [json.dumps({"topic": f"{ROOT}/{GW}/sensors/{a}", "payload": p.decode(), "key": f"{a}/{ts!r}"})
             for a, p, ts in msgs]
    (tmp / "paced.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ready, arrived, sent = tmp / "listener.ready", tmp / "arrivals.json", tmp / "sent.json"
    ready.unlink(missing_ok=True)
    timeout_s = len(msgs) / rate_per_s + 60
    listener = subprocess.Popen([*probe, "listen", str(port), f"{ROOT}/{GW}/anomaly/+/score", str(expected),
                                 str(arrived), str(ready), str(timeout_s)], cwd=Path(__file__).parents[2])
    deadline = time.monotonic() + 30
    while not ready.exists():
        if listener.poll() is not None or time.monotonic() > deadline:
            raise EdgeAAEError("latency listener did not subscribe")
        time.sleep(0.05)
    subprocess.run([*probe, "publish", str(port), str(tmp / "paced.jsonl"), str(rate_per_s), str(sent)],
                   check=True, cwd=Path(__file__).parents[2], timeout=timeout_s)
    listener.wait(timeout_s)
    at, sent_at = json.loads(arrived.read_text()), json.loads(sent.read_text())
    return np.array([(at[k] - sent_at[k]) * 1e3 for k in at if k in sent_at])


def run_daemon_bench(bundle_dir: Path, n_readings: int = 20000, n_assets: int = 8) -> tuple[dict[str, Any], str]:
    """Run the comparison; returns ``(results, markdown table)``."""
    bundle = open_bundle(bundle_dir)
    channels, window_len = bundle.channels, bundle.window_len
    with tempfile.TemporaryDirectory(prefix="edge-aae-bench-") as tmp_s:
        tmp = Path(tmp_s)
        broker = Mosquitto(tmp / "broker")
        broker.start()
        daemon: subprocess.Popen[bytes] | None = None
        try:
            t0 = 1.7e9
            topic = f"{ROOT}/{GW}/sensors/{{asset}}"
            # 1 and 2, in turn: the bare subscriber, then the daemon flat out, PAIRS times (a shared
            # host's speed moves between runs; each pair's ratio is taken within the pair). The bare
            # phase publishes under another gateway id, which the running daemon does not hear.
            msgs = _messages(channels, n_assets, n_readings, t0)
            expected = len(msgs) - n_assets * (window_len - 1)  # each run starts after a gap: windows refill
            bare_rates, daemon_rates, pub_rates_all = [], [], []
            rss: list[float] = []
            stop = threading.Event()
            status: _Counter | None = None
            trimmed_at = 0.0
            for k in range(PAIRS):
                bare = _Counter(broker.port, f"{ROOT}/{GW}x/sensors/+", parse=True)
                bare_pub_s = c_publish(broker.port, f"{ROOT}/{GW}x/sensors/{{asset}}", msgs, tmp)
                if not bare.wait(len(msgs), 120):
                    raise EdgeAAEError(f"bare subscriber got {bare.n} of {len(msgs)} readings")
                bare_rates.append(bare.rate())
                bare.close()
                if daemon is None:  # started once, after the first bare run
                    daemon, status = _flat_out_daemon(bundle_dir, tmp, broker, n_readings, stop, rss)
                    trimmed_at = time.monotonic() + TRIM_AFTER_S + 1.0  # runtime.trim_memory's one pass is done by then
                scores = _Counter(broker.port, f"{ROOT}/{GW}/anomaly/+/score", parse=False)
                daemon_pub_s = c_publish(broker.port, topic, _messages(channels, n_assets, n_readings,
                                                                       t0 + 1e6 + k * 1e5), tmp)
                if not scores.wait(expected, 180):
                    raise EdgeAAEError(f"daemon published {scores.n} of {expected} scores")
                daemon_rates.append(scores.rate() * len(msgs) / max(expected, 1))  # readings/s
                scores.close()
                pub_rates_all.append((len(msgs) / bare_pub_s, len(msgs) / daemon_pub_s))
            assert daemon is not None
            assert status is not None
            ratios = [d / b if b else 0.0 for d, b in zip(daemon_rates, bare_rates, strict=True)]
            mid = int(np.argsort(ratios)[len(ratios) // 2])  # the pair with the median ratio
            bare_rate, daemon_rate = bare_rates[mid], daemon_rates[mid]
            # 3. latency at half the daemon's rate, after the start-up memory trim (a one-off)
            time.sleep(max(0.0, trimmed_at - time.monotonic()))
            half = daemon_rate / 2
            n_lat = min(len(msgs), int(half * 10))  # about ten seconds
            paced = _messages(channels, n_assets, n_lat, t0 + 2e6)
            delays = paced_latencies(broker.port, paced, half, len(paced) - n_assets * (window_len - 1), tmp)
            quarter = daemon_rate / 4  # one reading at a time costs more than in the flat-out run's batches
            paced = _messages(channels, n_assets, min(len(msgs), int(quarter * 10)), t0 + 3e6)
            delays_q = paced_latencies(broker.port, paced, quarter, len(paced) - n_assets * (window_len - 1), tmp)
            steady = process_memory(daemon.pid)  # after 20 s of scoring 8 assets, scores published
            stop.set()
            status.close()
            daemon.terminate()
            daemon.wait(30)
            # 4. batch messages, stride 1, to a fresh daemon: defaults, then two scoring threads
            # with larger micro-batches; each on a fresh broker (a daemon on the same broker and
            # gateway id would inherit the previous one's session, and the broker its backlog)
            runs = []
            for name, kwargs in (("broker-b1", {}), ("broker-b2", {"threads": 2, "batch_max": TWO_THREAD_BATCH_MAX})):
                broker.stop()
                broker = Mosquitto(tmp / name)
                broker.start()
                runs.append(batch_phase(bundle_dir, tmp, broker, channels, window_len, **kwargs))
            batched, batched_2 = runs
            # 5. idle: no readings at all
            idle_cpu = idle_phase(bundle_dir, tmp, broker)
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.terminate()
                daemon.wait(30)
            broker.stop()
    pub_rates = (min(p[0] for p in pub_rates_all), min(p[1] for p in pub_rates_all))  # the slowest send of each
    results = {
        "readings": len(msgs), "assets": n_assets, "bare_readings_per_s": bare_rate,
        "daemon_readings_per_s": daemon_rate, "ratio": ratios[mid],
        "pairs": [{"bare_readings_per_s": b, "daemon_readings_per_s": d, "ratio": r}
                  for b, d, r in zip(bare_rates, daemon_rates, ratios, strict=True)],
        "latency_rate_per_s": half, "latency_ms_p50": float(np.percentile(delays, 50)) if delays.size else None,
        "latency_ms_p99": float(np.percentile(delays, 99)) if delays.size else None,
        "latency_samples": int(delays.size),
        "latency_quarter_rate_per_s": quarter,
        "latency_quarter_ms_p50": float(np.percentile(delays_q, 50)) if delays_q.size else None,
        "latency_quarter_ms_p99": float(np.percentile(delays_q, 99)) if delays_q.size else None,
        "daemon_rss_mb_max": max(rss) if rss else None, "daemon_memory_steady_mb": steady,
        "batch": batched, "batch_two_threads": batched_2, "idle_cpu_percent": idle_cpu,
        "publisher_readings_per_s": {"bare": pub_rates[0], "daemon": pub_rates[1]},
    }
    # a publisher that finished well before its receiver drained the stream is not what the rate measures
    publisher_verdict = ("not the bound" if pub_rates[0] >= 1.5 * max(bare_rates)
                         and pub_rates[1] >= 1.5 * max(daemon_rates) else "possibly the bound")
    inference_share = (batched["windows_scored"] * float(batched["inference_ms_p50"] or 0.0) / 1e3
                       * batched["readings_per_s"] / batched["readings"])
    bound = (f"onnxruntime scored for {inference_share:.0%} of the elapsed time; the daemon's Python (parsing, "
             "windows, alert state) runs beside it on the worker while readings wait, each batch being scored on a "
             "scoring thread as the worker handles the previous one's results")
    table = "\n".join([
        "| path | readings/s | vs bare subscriber |",
        "|---|---|---|",
        f"| bare paho subscriber (parse JSON only{', with orjson' if orjson is not None else ''}) "
        f"| {bare_rate:,.0f} | 1.00x |",
        f"| edge-aae serve (parse, window, score, publish) | {daemon_rate:,.0f} | {results['ratio']:.2f}x |",
        "",
        f"The pair with the median ratio of {PAIRS} (bare subscriber, then daemon, in turn); all of them: "
        + "; ".join(f"{b:,.0f} / {d:,.0f} readings/s, {r:.2f}x" for b, d, r in zip(bare_rates, daemon_rates, ratios,
                                                                                    strict=True)) + ".",
        "",
        f"Latency publish → score at {half:,.0f} readings/s (half the daemon's rate), {delays.size} samples: "
        f"p50 {results['latency_ms_p50']:.2f} ms, p99 {results['latency_ms_p99']:.2f} ms; at "
        f"{results['latency_quarter_rate_per_s']:,.0f} readings/s (a quarter): p50 "
        f"{results['latency_quarter_ms_p50']:.2f} ms, p99 {results['latency_quarter_ms_p99']:.2f} ms. Publisher and "
        "listener are processes of their own (one `mosquitto_pub -l -q 1` per asset, fed paced lines through "
        "a pipe; `mosquitto_sub` stamping arrivals). "
        f"Daemon RSS at steady state (end of the paced runs, {n_assets} assets scored, scores published): "
        f"**{steady['VmRSS']:.1f} MB** ({steady['RssAnon']:.1f} MB anonymous, {steady['RssFile']:.1f} MB of "
        f"library files; goal ≤ 60 MB; proportional set size {steady.get('Pss', float('nan')):.1f} MB, pages other "
        f"processes map too counted in proportion), max {results['daemon_rss_mb_max']:.0f} MB while starting up, "
        "before `runtime.trim_memory` gave the start-up pages back. The library pages this bench's own "
        "Python processes map too (numpy, libpython) stay resident here whatever the trim advises; the "
        "memory section measures the daemon as the only Python process, as on a gateway. "
        f"{len(msgs):,} single-reading messages (QoS 1) over {n_assets} assets, one local mosquitto, "
        f"published by `mosquitto_pub -l -q 1`, one process per asset, for both (the publishers "
        f"sent at least {pub_rates[0]:,.0f} and {pub_rates[1]:,.0f} readings/s: {publisher_verdict}); "
        f"model `{bundle.name} {bundle.version}` ({bundle.model_file}, "
        f"window {window_len}, {len(channels)} channels), onnxruntime 1 thread.",
        "",
        f"Batch messages: {batched['readings']:,} readings in {batched['batch']}-reading messages over {n_assets} "
        f"assets (published in {batched['published_s']:.1f} s), stride 1, scores not published "
        f"(`publish.scores = \"none\"`): **{batched['readings_per_s']:,.0f} readings/s scored** "
        f"({batched['windows_scored']:,} of {batched['expected']:,} windows), queue_full drops "
        f"{batched['queue_full']:,}, over_share {batched['over_share']:,}; inference "
        f"{batched['inference_ms_p50']} ms per window (p50); {bound}; the time to the last window is "
        "extrapolated from the daemon's last once-a-second report before it. "
        f"With `runtime.threads = 2` and `runtime.batch_max = {TWO_THREAD_BATCH_MAX}` (two single-threaded "
        "onnxruntime sessions, each "
        f"scoring half of each micro-batch at once): **{batched_2['readings_per_s']:,.0f} readings/s** "
        f"({batched_2['readings_per_s'] / batched['readings_per_s']:.2f}x the defaults; "
        f"{batched_2['windows_scored']:,} of {batched_2['expected']:,} windows, queue_full drops "
        f"{batched_2['queue_full']:,}; inference {batched_2['inference_ms_p50']} ms per window of elapsed time, p50).",
        "",
        f"Idle (default settings, connected, no readings, 60 s): **{idle_cpu:.2f} % of one core** (goal ≤ 1 %).",
    ])
    return results, table


if __name__ == "__main__":  # pragma: no cover - manual use
    logging.basicConfig(level=logging.INFO)
    print(run_daemon_bench(Path(sys.argv[1]))[1])
    os._exit(0)
