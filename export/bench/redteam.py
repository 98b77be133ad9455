"""Red-team attacks against one live gateway daemon and a real mosquitto (tests and ``make drills``).

Each attack is a function ``attack(target) -> Row`` that does what someone with write access to the
sensor or update topics would do, then checks the outcome: the gateway keeps scoring a good asset
throughout, reports what it refused, and never writes, hashes or holds what it has not verified.
A :class:`Target` is one daemon with updates enabled, a recorder on every topic and a good asset
streamed in real time; attacks run one after another against it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.core.update_format import update_messages
from edge_aae.devtools.daemon_process import DaemonProcess, write_config
from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder, publisher
from export.bench.common import sample_rss

Row = dict[str, Any]
GATEWAY = "gw1"
BASE = f"edge-aae/{GATEWAY}"


def resign(src: Path, dst: Path, keys: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of bundle ``src`` whose manifest ``edit`` changed, signed again with ``keys``."""
    from export.signing import load_private_key, sign_bundle

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m, indent=1))
    sign_bundle(dst, load_private_key(keys))
    return dst


def with_version(version: str) -> Callable[[dict[str, Any]], None]:
    """A manifest edit that sets the model version."""
    def edit(m: dict[str, Any]) -> None:
        m["model"]["version"] = version
    return edit


class GoodStream(threading.Thread):
    """Publishes normal readings of asset ``good`` at ``rate_hz`` with the gateway's clock."""

    def __init__(self, port: int, rows: np.ndarray, channels: list[str], rate_hz: float = 40.0) -> None:
        super().__init__(daemon=True)
        self.client = publisher(port, client_id="good-plc")
        self.rows, self.channels, self.period = rows, channels, 1.0 / rate_hz
        self.halt = threading.Event()

    def run(self) -> None:
        """Publish readings until stopped."""
        i = 0
        while not self.halt.is_set():
            row = self.rows[i % len(self.rows)]
            payload = {"ts": time.time(), "values": {c: float(v) for c, v in zip(self.channels, row, strict=True)}}
            self.client.publish(f"{BASE}/sensors/good", json.dumps(payload), qos=1)
            i += 1
            time.sleep(self.period)

    def stop(self) -> None:
        """Stop publishing."""
        self.halt.set()
        self.join(5)
        self.client.disconnect()
        self.client.loop_stop()


class Target:
    """One live daemon (updates on) on its own mosquitto, a recorder on ``edge-aae/#``, a good asset."""

    def __init__(self, tmp: Path, bundle: Path, keys: Path, normal_rows: np.ndarray, channels: list[str],
                 extra: str = "", broker_conf: str = "", runtime: str = "") -> None:
        self.tmp, self.keys = tmp, keys
        self.models = tmp / "models"
        self.broker = Mosquitto(tmp / "broker", extra_conf=broker_conf)
        self.broker.start()
        self.rec = Recorder(self.broker.port, "edge-aae/#")
        # the good asset's scores on a connection of their own: the one above also carries every flood
        self.good_rec = Recorder(self.broker.port, f"{BASE}/anomaly/good/score")
        # alerts too, as an alert consumer subscribes: a flood's score messages on the connection
        # above can outrun this process, and the broker then drops what it holds for it, alerts
        # included (mosquitto logs "Outgoing messages are being dropped")
        self.alert_rec = Recorder(self.broker.port, f"{BASE}/anomaly/+/alert")
        update = (f'[update]\nenabled = true\npublic_key = "{keys / "public.pem"}"\n'
                  f'models_dir = "{self.models}"\nhealth_window_s = 5\nchunk_timeout_s = 60\n')
        self.config = write_config(tmp / "gw.toml", bundle, tmp / "outbox", extra=update + extra, runtime=runtime)
        self.daemon = DaemonProcess(tmp, self.config, self.broker.url)
        if not self.rec.wait_for(lambda r: any(m.get("healthy") for m in r.json(f"{GATEWAY}/status")), 40):
            raise RuntimeError(f"daemon never became healthy:\n{self.daemon.log()[-3000:]}")
        self.good = GoodStream(self.broker.port, normal_rows, channels)
        self.good.start()
        if not self.wait_good(30):
            raise RuntimeError(f"good asset never scored:\n{self.daemon.log()[-3000:]}")
        self._waits: list[tuple[float, float]] = []  # (wall time, seconds since the newest scored good reading)
        self._waits_stop = threading.Event()
        self._waits_thread = threading.Thread(target=self._sample_waits, daemon=True)
        self._waits_thread.start()
        self.attacker = publisher(self.broker.port, client_id="attacker")

    # ---- observations --------------------------------------------------------------------

    def good_score_times(self) -> list[float]:
        """Arrival order is publish order; the score's ``ts`` is the reading's time (gateway clock)."""
        return [m["ts"] for m in self.good_rec.json("/anomaly/good/score")]

    def wait_good(self, timeout_s: float = 10.0, after: float | None = None) -> bool:
        """Whether the good asset gets a score for a reading newer than ``after`` (default: now)."""
        t = time.time() if after is None else after
        return self.good_rec.wait_for(lambda r: any(ts > t for ts in self.good_score_times()[-50:]), timeout_s)

    def _sample_waits(self) -> None:
        """Every 50 ms: how long ago the newest good reading with a score was taken."""
        while not self._waits_stop.wait(0.05):
            messages = self.good_rec.messages  # appended by paho's thread: reading the last one is safe
            last = messages[-1][1] if messages else b""
            if last:
                now = time.time()
                self._waits.append((now, now - float(json.loads(last)["ts"])))

    def longest_wait_s(self, since: float) -> float:
        """The good asset's longest wait for a score since ``since``: readings held and scored late count.

        :meth:`unscored_s` looks for gaps in the scored readings' timestamps, so a worker that holds
        every asset's readings and scores them all later leaves no gap there; here it shows.
        """
        return max((w for t, w in self._waits if t >= since), default=0.0)

    def unscored_s(self, since: float) -> float:
        """The longest gap between good-asset scores since ``since`` (up to now)."""
        ts = sorted(t for t in self.good_score_times() if t >= since) + [time.time()]
        return float(max(np.diff([since, *ts]))) if ts else float("inf")

    def errors(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Error reports received since ``since`` (monotonic seconds)."""
        return [m for m in self.rec.json(f"{BASE}/errors") if m["ts"] >= since]

    def outcomes(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Update outcomes received since ``since``."""
        return [m for m in self.rec.json(f"{BASE}/model") if m.get("ts", 0) >= since]

    def status(self) -> dict[str, Any]:
        """The latest retained status."""
        online = [m for m in self.rec.json(f"{BASE}/status") if m.get("state") == "online"]
        return online[-1] if online else {}

    def running_version(self) -> str:
        """The model version the status reports."""
        return str(self.status().get("models", {}).get("default", {}).get("version"))

    def rss_mb(self) -> float:
        """The daemon's resident memory."""
        try:
            for line in Path(f"/proc/{self.daemon.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def models_dir_bytes(self) -> int:
        """Bytes under the daemon's models directory."""
        total = 0
        for p in self.models.rglob("*"):
            if p.is_file():
                total += p.stat().st_blocks * 512
        return total

    def send(self, payloads: list[bytes], topic: str = f"{BASE}/model/update", qos: int = 1) -> None:
        """Publish raw payloads as the attacker."""
        infos = [self.attacker.publish(topic, p, qos=qos) for p in payloads]
        for info in infos:
            info.wait_for_publish(30)

    def deploy(self, bundle: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run ``edge-aae deploy`` against the gateway."""
        return subprocess.run([sys.executable, "-m", "edge_aae.cli", "deploy", str(bundle), "--broker",
                               self.broker.url, "--gateway", GATEWAY, "--chunk-kb", "32", "--wait", "30", *extra],
                              capture_output=True, text=True, timeout=120)

    def close(self) -> None:
        """Stop the publisher and disconnect."""
        self._waits_stop.set()
        self.good.stop()
        self.attacker.disconnect()
        self.attacker.loop_stop()
        self.rec.close()
        self.good_rec.close()
        self.alert_rec.close()
        self.daemon.close()
        self.broker.stop()


def row(attack: str, variant: str, ok: bool, outcome: str, target: Target, since: float) -> Row:
    """One line of the red-team table."""
    return {"attack": attack, "variant": variant, "outcome": outcome, "ok": ok,
            "good asset unscored (s)": round(target.unscored_s(since), 2),
            "good asset's longest wait (s)": round(target.longest_wait_s(since), 2)}


# ---- sensor-topic attacks -----------------------------------------------------------------------

HUGE = "1" + "0" * 400
DEAFENING = {
    "400-digit ts (the report)": f'{{"ts": {HUGE}, "values": {{}}}}',
    "400-digit value": f'{{"ts": 1700000000, "values": {{"CH": {HUGE}}}}}',
    "400-digit seq": f'{{"ts": 1700000000, "values": {{}}, "seq": {HUGE}}}',
    "5000-digit int (over the parser's limit)": '{"ts": 1' + "0" * 5000 + ', "values": {}}',
    "1e999 float literal": '{"ts": 1e999, "values": {}}',
    "huge int inside a ts list": f'{{"ts": [1700000000, {HUGE}], "values": {{}}}}',
    "deep nesting": '{"ts": ' + "[" * 100000 + "]" * 100000 + "}",
    "lone surrogate channel name": '{"ts": 1700000000, "values": {"\\ud800": 1}}',
}


def attack_deafening_numbers(t: Target, channel: str) -> list[Row]:
    """Each payload on the sensor topic (QoS 1), then the gateway must still score the good asset."""
    rows = []
    for variant, text in DEAFENING.items():
        since = time.time()
        t.send([text.replace("CH", channel).encode()], topic=f"{BASE}/sensors/pump9")
        ok = t.wait_good(10)
        t.rec.wait_for(lambda r, s=since: any(e["asset"] == "pump9" for e in t.errors(s)), 10)
        errs = [e["reason"] for e in t.errors(since) if e["asset"] == "pump9"]
        rows.append(row("deafening number", variant, ok and bool(errs),
                        f"rejected as {errs[0] if errs else '?'}; still scoring" if ok else "DEAF", t, since))
    return rows


class _PeakRss:
    """The daemon's peak resident memory (MB) from now until :meth:`stop`, sampled every 10 ms."""

    def __init__(self, t: Target) -> None:
        self._samples: list[float] = [t.rss_mb()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=sample_rss, args=(t.daemon.proc.pid, self._stop, self._samples, 0.01),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self._samples)


def attack_huge_messages(t: Target, megabytes: int = 200, restart: bool = True) -> list[Row]:
    """Messages of ``megabytes`` on the sensor and update topics, one retained: memory stays bounded.

    paho reads a whole message into memory before the daemon can refuse it; without a limit the
    broker passes on (``broker.max_packet_bytes``, the MQTT 5 Maximum Packet Size) a 200 MB reading
    made the daemon's RSS peak at 665 MB: on a small gateway, killed for memory. A retained one
    would come back at every restart. With ``restart``, the daemon is restarted once the retained
    message is in place (it must come back healthy, its memory bounded as it resubscribes).
    """
    rows = []
    blob = b"x" * (megabytes * 2**20)
    cases = [("reading message", f"{BASE}/sensors/pump9", False), ("update message", f"{BASE}/model/update", False),
             ("retained reading message", f"{BASE}/sensors/pump8", True)]
    for name, topic, retain in cases:
        since = time.time()
        base = t.rss_mb()
        sampler = _PeakRss(t)
        t.attacker.publish(topic, blob, qos=1, retain=retain).wait_for_publish(120)
        t.send([b"{}"])  # the broker has passed on (or dropped) the big one by the time this is acknowledged
        time.sleep(1.0)
        peak = sampler.stop() - base
        ok = peak < megabytes / 4 and t.wait_good(10)
        outcome = f"daemon RSS peak +{peak:.0f} MB"
        if retain and restart:
            t.daemon.kill()
            t.daemon = DaemonProcess(t.tmp, t.config, t.broker.url)
            sampler = _PeakRss(t)
            back = t.rec.wait_for(lambda r, t0=since: any(m.get("healthy") and m["ts"] > t0
                                                          for m in r.json(f"{GATEWAY}/status")), 40) and t.wait_good(20)
            time.sleep(1.0)
            peak_restart = sampler.stop()
            ok = ok and back and peak_restart < 100 + megabytes / 4
            outcome += f"; restarted: {'healthy, scoring' if back else 'NOT back'}, RSS peak {peak_restart:.0f} MB"
        if retain:
            t.attacker.publish(topic, b"", qos=1, retain=True).wait_for_publish(30)  # clear the retained one
        rows.append(row("huge message", f"{megabytes} MB {name}", ok, outcome, t, since))
    return rows


def attack_future_timestamp(t: Target, channels: list[str], rows_: np.ndarray, window_len: int) -> list[Row]:
    """A reading far in the future is refused; one just inside the limit cannot blind the asset."""
    out = []
    since = time.time()
    far = {"ts": 4_000_000_000, "values": dict(zip(channels, map(float, rows_[0]), strict=True))}
    t.send([json.dumps(far).encode()], topic=f"{BASE}/sensors/clock")
    t.rec.wait_for(lambda r: any(e["reason"] == "future_timestamp" for e in t.errors(since)), 5)
    refused = any(e["reason"] == "future_timestamp" for e in t.errors(since))
    out.append(row("future timestamp", "ts = 4e9 (the report)", refused and t.wait_good(5),
                   "refused (future_timestamp)" if refused else "accepted", t, since))
    since = time.time()
    near = {"ts": time.time() + 250, "values": dict(zip(channels, map(float, rows_[0]), strict=True))}
    t.send([json.dumps(near).encode()], topic=f"{BASE}/sensors/clock")
    for i in range(window_len * 3):
        msg = {"ts": time.time(), "values": dict(zip(channels, map(float, rows_[i % len(rows_)]), strict=True))}
        t.attacker.publish(f"{BASE}/sensors/clock", json.dumps(msg), qos=1)
        time.sleep(0.01)
    scored = t.rec.wait_for(lambda r: any(m["ts"] < since + 200 for m in r.json("/anomaly/clock/score")), 10)
    reset = any(e["reason"] == "stream_reset" and e["asset"] == "clock" for e in t.errors(since))
    out.append(row("future timestamp", "ts = now + 250 s (inside the limit), then real time",
                   scored and reset, "stream reset, reported; the asset is scored again" if scored else "BLIND",
                   t, since))
    return out


def attack_sentinel_values(t: Target, channels: list[str], rows_: np.ndarray, window_len: int) -> list[Row]:
    """A huge but float32-finite value every window length: the asset stays scored, flagged, its JSON valid.

    Such a reading (1e30, or a sensor's error sentinel just under FLT_MAX; beyond that the parser
    refuses it) once overflowed the graph: the FP32 model scored inf or NaN, its windows were
    dropped as ``non_finite_score`` (one every ``window_len`` readings kept the asset unscored, and
    three such batches in a row rolled an updated model back); INT8 kept the score finite but
    published infinite contributions and alerts with NaN shares, which strict JSON parsers refuse.
    """
    out = []
    for variant, value in (("1e30", 1e30), ("3.4e38 (just under FLT_MAX)", 3.4e38)):
        since = time.time()
        asset = "sentinel" + ("a" if value < 1e38 else "b")
        n = window_len * 4
        for i in range(n):
            values = dict(zip(channels, map(float, rows_[i % len(rows_)]), strict=True))
            if i % window_len == window_len - 1:
                values[channels[0]] = value
            t.attacker.publish(f"{BASE}/sensors/{asset}", json.dumps({"ts": since - n + i, "values": values}), qos=1)
        expected = n - window_len + 1
        done = t.rec.wait_for(lambda r, a=asset, k=expected: len(r.json(f"/anomaly/{a}/score")) >= k, 15)
        scores = t.rec.json(f"/anomaly/{asset}/score")
        alerts = [m for m in t.alert_rec.json(f"/anomaly/{asset}/alert") if m.get("event") == "raised"]
        finite = all(np.isfinite([m["score"], *m["channel_scores"].values()]).all() for m in scores) and all(
            np.isfinite([c["share"] for c in m["top_channels"]]).all() for m in alerts)
        dropped = [e for e in t.errors(since) if e["reason"] == "non_finite_score"]
        blamed = bool(alerts) and alerts[0]["top_channels"][0]["channel"] == channels[0]
        ok = done and finite and not dropped and blamed and t.wait_good(5)
        out.append(row("sentinel value", f"{variant} every {window_len} readings", ok,
                       f"{len(scores)} of {expected} windows scored, all finite: {finite}, non_finite_score "
                       f"reports {len(dropped)}, alert raised blaming {channels[0]}: {blamed}", t, since))
    return out


def attack_flood(t: Target, channels: list[str], rows_: np.ndarray, seconds: float = 5.0) -> list[Row]:
    """One asset floods batch messages as fast as a Python publisher can; the good asset keeps being scored.

    The rate is the publisher's, reported as such: it is many times what the daemon scores (the flood
    drill measures that), which is the point, but it is not a measured multiple of capacity.
    """
    since = time.time()
    n = 2000
    flood_client = publisher(t.broker.port, client_id="flooder")
    try:
        t_end = time.monotonic() + seconds
        k = 0
        base = time.time() - 86400.0
        while time.monotonic() < t_end:
            ts = [base + (k * n + i) * 2e-3 for i in range(n)]
            vals = {c: [float(rows_[i % len(rows_), j]) for i in range(n)] for j, c in enumerate(channels)}
            flood_client.publish(f"{BASE}/sensors/flood", json.dumps({"ts": ts, "values": vals}), qos=0)
            k += 1
            time.sleep(0.002)
    finally:
        flood_client.disconnect()
        flood_client.loop_stop()
    flood_end = time.time()
    ok = t.wait_good(15)
    gap = t.unscored_s(since)
    during = sum(1 for ts in t.good_score_times() if since <= ts <= flood_end)
    dropped = [e for e in t.errors(since) if e["reason"] == "queue_full"]
    # "not starved": scored all through the flood, never silent for more than a few seconds
    return [row("flood on one asset", f"{k} messages x {n} readings in {seconds:.0f} s "
                f"({k * n / seconds:,.0f} readings/s)",
                ok and gap < 3 and during >= seconds and all(e["asset"] == "flood" for e in dropped),
                f"queue_full reported for the flooding asset only ({len(dropped)} reports)" if dropped
                else "no drops needed", t, since)]


def attack_long_asset_names(t: Target, channels: list[str], rows_: np.ndarray) -> list[Row]:
    """Many huge asset names: rejected (bad_asset); many valid assets: the retained status stays small."""
    since = time.time()
    for i in range(200):
        t.attacker.publish(f"{BASE}/sensors/{'x' * 60000}{i}", b"{}", qos=1)
    reading = json.dumps({"ts": time.time() - 60, "values": dict(zip(channels, map(float, rows_[0]), strict=True))})
    for i in range(150):
        t.attacker.publish(f"{BASE}/sensors/{'a' * 150}{i:03d}", reading, qos=1)
    t.rec.wait_for(lambda r: sum(e["reason"] == "bad_asset" for e in t.errors(since)) >= 1, 10)
    time.sleep(2.5)
    status = t.status()
    size = len(json.dumps(status))
    t.rec.wait_for(lambda r: t.status().get("assets_total", 0) >= 150, 10)
    status = t.status()
    size = len(json.dumps(status))
    ok = (any(e["reason"] == "bad_asset" for e in t.errors(since)) and size < 64_000
          and len(status.get("assets", [])) == 100 and status.get("assets_total", 0) >= 150 and t.wait_good(5))
    return [row("long asset names", "200 names of 60 KB, then 150 valid new assets",
                ok, f"bad_asset; status {size / 1000:.1f} KB, lists {len(status.get('assets', []))} of "
                    f"{status.get('assets_total')}", t, since)]


# ---- feedback-topic attacks ---------------------------------------------------------------------

def _raise_long_alert(t: Target, channels: list[str], rows_: np.ndarray, asset: str, readings: int) -> str:
    """Stream ``readings`` readings of ``asset``, every one with a sentinel value: one alert raised, never cleared."""
    start = time.time() - readings - 5
    batch = 200
    for k in range(0, readings, batch):
        ts = [start + i for i in range(k, min(k + batch, readings))]
        vals = {c: [float(rows_[i % len(rows_), j]) for i in range(k, k + len(ts))] for j, c in enumerate(channels)}
        vals[channels[0]] = [1e30] * len(ts)
        t.attacker.publish(f"{BASE}/sensors/{asset}", json.dumps({"ts": ts, "values": vals}), qos=1)
    t.alert_rec.wait_for(lambda r: any(m.get("event") == "raised" for m in r.json(f"/anomaly/{asset}/alert")), 20)
    raised = [m for m in t.alert_rec.json(f"/anomaly/{asset}/alert") if m.get("event") == "raised"]
    # the alert must still be raised when labelled, with the whole stream behind it
    t.rec.wait_for(lambda r: len(r.json(f"/anomaly/{asset}/score")) >= readings - 64, 30)
    return str(raised[-1]["alert_id"]) if raised else ""


def _feedback_settled(t: Target, after: float, quiet_s: float = 2.0, timeout_s: float = 90.0) -> None:
    """Wait for a feedback state newer than ``after``, then until it has not changed for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        states = [m for m in t.rec.json(f"{BASE}/feedback/state") if m.get("ts", 0) >= after]
        if len(states) != last:
            last, since = len(states), time.monotonic()
        elif states and time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.1)


def attack_feedback_amplification(t: Target, channels: list[str], rows_: np.ndarray, labels: int = 2000,
                                  collects: int = 300) -> list[Row]:
    """Cheap feedback messages that each cost the gateway much: label one long alert over and over, collect.

    A label writes the alert's readings (up to ``feedback.keep_readings`` per asset) to disk, about
    20 ms for 3,000 readings; a ``collect`` reads every kept file and publishes it. Both ran on the
    worker that scores every asset, one command after another: 2,000 labels sent in a second held
    scoring for half a minute, and each collect queued every kept file again for the broker.
    """
    out = []
    asset = "labelled"
    alert_id = _raise_long_alert(t, channels, rows_, asset, 3000)
    since = time.time()
    cmds = [json.dumps({"command": "label", "id": f"l{i}", "alert_id": alert_id,
                        "label": ("false_alarm", "confirmed")[i % 2]}).encode() for i in range(labels)]
    t.send(cmds, topic=f"{BASE}/feedback")
    _feedback_settled(t, since)
    ok = bool(alert_id) and t.wait_good(10)
    gap = t.longest_wait_s(since)
    state = (t.rec.json(f"{BASE}/feedback/state") or [{}])[-1]
    refused = sum(e["reason"] == "feedback_queue_full" for e in t.errors(since))
    out.append(row("feedback amplification", f"{labels} labels of one alert of 3,000 readings, sent at once",
                   ok and gap < 3, f"{state.get('labelled', 0)} applied, feedback_queue_full reported {refused} "
                   f"time(s); the good asset's longest wait for a score {gap:.2f} s", t, since))
    since = time.time()
    rss0 = t.rss_mb()
    peak = _PeakRss(t)
    t.send([json.dumps({"command": "collect", "id": f"c{i}"}).encode() for i in range(collects)],
           topic=f"{BASE}/feedback")
    _feedback_settled(t, since)
    time.sleep(1.0)
    ok = t.wait_good(10)
    grew = peak.stop() - rss0
    gap = t.longest_wait_s(since)
    done = sum(1 for topic, p, _ in t.rec.messages if "/feedback/collected/" in topic and b'"done"' in p)
    out.append(row("feedback amplification", f"{collects} collects of the kept labelled alerts, sent at once",
                   ok and gap < 3 and grew < 10,
                   f"{done} collect(s) published in full, the others refused while one was in progress; "
                   f"daemon RSS peak +{grew:.0f} MB; the good asset's longest wait for a score {gap:.2f} s", t, since))
    return out


# ---- update-topic attacks -----------------------------------------------------------------------

def _header(update_id: str, manifest: bytes, signature: bytes, archive: bytes, chunk: int = 32768) -> list[bytes]:
    parts = [archive[i:i + chunk] for i in range(0, len(archive), chunk)] or [b""]
    head = {"update_id": update_id, "kind": "header", "asset": "",
            "manifest": base64.b64encode(manifest).decode(), "signature": base64.b64encode(signature).decode(),
            "count": len(parts), "sha256": hashlib.sha256(archive).hexdigest(),
            "chunks": [hashlib.sha256(p).hexdigest() for p in parts]}
    return [json.dumps(head).encode()] + [
        json.dumps({"update_id": update_id, "kind": "chunk", "index": i,
                    "data": base64.b64encode(p).decode()}).encode() for i, p in enumerate(parts)]


def sparse_archive(name: str = "model.onnx", declared: int = 10 * 2**30) -> bytes:
    """A tar whose member ``name`` is a PAX (GNU 0.0) sparse file declaring ``declared`` bytes in 1 KB."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 1024
        info.pax_headers = {"GNU.sparse.size": str(declared), "GNU.sparse.numblocks": "1",
                            "GNU.sparse.offset": str(declared - 1024), "GNU.sparse.numbytes": "1024"}
        tar.addfile(info, io.BytesIO(b"\0" * 1024))
    return buf.getvalue()


def _outcome_for(t: Target, uid: str, timeout_s: float = 15.0) -> dict[str, Any]:
    t.rec.wait_for(lambda r: any(o.get("update_id") == uid for o in t.outcomes()), timeout_s)
    found = [o for o in t.outcomes() if o.get("update_id") == uid]
    return found[-1] if found else {}


def attack_update_before_verification(t: Target, bundle: Path) -> list[Row]:
    """Unsigned or wrongly signed updates: refused at the header; nothing written, hashed or held."""
    rows = []
    manifest = json.loads((bundle / "manifest.json").read_text())
    valid_archive = (bundle / "model.onnx").read_bytes()
    cases: dict[str, tuple[bytes, bytes, bytes]] = {}
    m = dict(manifest, model={**manifest["model"], "version": "99.0.0"})
    cases["sparse member declaring 10 GiB (the report)"] = (json.dumps(m).encode(), b"", sparse_archive())
    probe = dict(m, files={"/etc/passwd": {"sha256": "0" * 64, "bytes": 10}, "../../etc/shadow": {"sha256": "0" * 64}})
    cases["manifest files name /etc/passwd (the report)"] = (json.dumps(probe).encode(), b"\1" * 64, valid_archive)
    slow = dict(m, files={"/proc/self/pagemap": {"sha256": "0" * 64, "bytes": 1}})
    cases["/proc/self/pagemap in files (the report)"] = (json.dumps(slow).encode(), b"", valid_archive)
    cases["signed with another key"] = ((bundle / "manifest.json").read_bytes(), os.urandom(64), valid_archive)
    for i, (variant, (mbytes, sig, archive)) in enumerate(cases.items()):
        time.sleep(1.0)  # refusals of unsigned updates are published at most 2 per second
        since = time.time()
        before = t.models_dir_bytes()
        uid = f"evil{i}"
        t0 = time.monotonic()
        t.send(_header(uid, mbytes, sig, archive))
        out = _outcome_for(t, uid)
        took = time.monotonic() - t0
        leaked = any(ch in out.get("reason", "") for ch in ("passwd", "shadow", "pagemap"))
        wrote = t.models_dir_bytes() - before
        staging = list(t.models.glob(".staging-*"))
        ok = out.get("event") == "refused" and not wrote and not staging and took < 5 and t.wait_good(5)
        rows.append(row("update before verification", variant, ok and not leaked,
                        f"refused in {took:.1f} s: {out.get('reason', 'no outcome')[:70]}; {wrote} bytes written",
                        t, since))
    return rows


def attack_chunk_flood(t: Target, megabytes: int = 60) -> list[Row]:
    """Unsigned chunks (no header) and chunks for unknown updates: nothing is held."""
    since = time.time()
    rss0 = t.rss_mb()
    blob = base64.b64encode(os.urandom(256 * 1024)).decode()
    for i in range(megabytes * 4):
        t.attacker.publish(f"{BASE}/model/update", json.dumps({"update_id": f"junk{i % 7}", "kind": "chunk",
                                                               "index": i, "data": blob}), qos=1)
    t.send([b"{}"])  # wait until the broker took them all
    time.sleep(2)
    grown = t.rss_mb() - rss0
    return [row("update memory hold", f"{megabytes} MB of unsigned chunks", grown < 40 and t.wait_good(5),
                f"daemon RSS grew {grown:.0f} MB", t, since)]


def attack_update_races(t: Target, v2: Path, v3: Path, conflicting: bool = True) -> list[Row]:
    """Slots and conflicting chunks cannot stop a signed update; back to back cannot downgrade."""
    rows = []
    since = time.time()
    junk_headers = [json.dumps({"update_id": f"slot{i}", "kind": "header", "asset": "", "manifest": "e30=",
                                "signature": "", "count": 1, "sha256": "0" * 64, "chunks": ["0" * 64]}).encode()
                    for i in range(40)]
    t.send(junk_headers)
    legit = update_messages(v3, "legit3", 16 * 1024)
    conflict = json.dumps({"update_id": "legit3", "kind": "chunk", "index": 0,
                           "data": base64.b64encode(b"evil" * 4000).decode()}).encode()
    t.send([legit[0], conflict, *legit[1:]])
    older = update_messages(v2, "legit2", 16 * 1024)
    t.send(older)  # a newer and an older signed bundle back to back
    o3, o2 = _outcome_for(t, "legit3", 30), _outcome_for(t, "legit2", 30)
    t.rec.wait_for(lambda r: t.running_version() == "3.0.0", 15)
    ok = o3.get("event") == "installed" and o2.get("event") == "refused" and t.running_version() == "3.0.0"
    rows.append(row("update slots, conflicting chunk, downgrade", "40 junk headers, a forged chunk 0, then v3 "
                    "and v2 back to back", ok and t.wait_good(10),
                    f"v3 {o3.get('event')}, v2 {o2.get('event')} ({o2.get('reason', '')[:40]}); running "
                    f"{t.running_version()}", t, since))
    return rows


def attack_version_path(t: Target, bundle: Path, work: Path) -> list[Row]:
    """A signed bundle whose version is a path: refused; nothing outside the models folder touched."""
    rows = []
    victim = work / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "keep.txt").write_text("keep")
    for i, version in enumerate(["9999.x/../../../victim", "10000/../../victim", "1.2.3 ", "１２.0"]):
        since = time.time()
        rel = os.path.relpath(victim, t.models)
        evil = resign(bundle, work / f"evil-version-{i}", t.keys,
                      with_version(version.replace("../../../victim", rel).replace("../../victim", rel)))
        uid = f"path{i}"
        t.send(update_messages(evil, uid, 32 * 1024))
        out = _outcome_for(t, uid)
        ok = out.get("event") == "refused" and (victim / "keep.txt").is_file()
        rows.append(row("version as a path", repr(version), ok, f"{out.get('event')}: "
                        f"{out.get('reason', '')[:60]}", t, since))
    return rows


def attack_forged_outcome(t: Target, unsigned: Path) -> list[Row]:
    """An attacker answers every update with a retained 'installed'; deploy must not believe it."""
    since = time.time()
    forger = publisher(t.broker.port, client_id="forger")

    def on_message(c: Any, _u: Any, msg: Any) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if data.get("kind") == "header":
            c.publish(f"{BASE}/model", json.dumps({"gateway": GATEWAY, "ts": time.time(), "event": "installed",
                                                   "update_id": data["update_id"], "version": "5.0.0"}),
                      qos=1, retain=True)

    forger.on_message = on_message
    forger.subscribe(f"{BASE}/model/update", qos=1)
    time.sleep(0.5)
    try:
        res = t.deploy(unsigned)
    finally:
        forger.disconnect()
        forger.loop_stop()
    # deploy must fail, and on the gateway's own answer (it refuses an unsigned bundle), not only on
    # a status that never confirms the forged 'installed'
    ok = res.returncode != 0 and "refused" in res.stdout
    return [row("forged update outcome", "retained 'installed' from a forger, unsigned bundle", ok,
                f"deploy exit {res.returncode}: {res.stdout.strip().splitlines()[-1][:80] if res.stdout else ''}",
                t, since)]


def insecure_warning(t: Target) -> bool:
    """Whether ``serve`` said loudly that updates are on over an open broker."""
    return "without TLS and credentials" in t.daemon.log()


def slow_bundle(src: Path, dst: Path, keys: Path, version: str, layers: int = 24, width: int = 2048) -> Path:
    """A valid, signed copy of ``src`` whose model does the same but ``layers`` extra dense layers of work.

    The extra branch feeds the score through ``+ 0 * tanh(...)``: golden windows still match exactly,
    only time and memory grow (the red team's "valid but 40x slower" model; 2048 wide: 1024-wide layers were
    only 5-9x slower than the model on a fast core, too close to the 5x limit to prove anything).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edge_aae.core.manifest import sha256_file

    def edit(m: dict[str, Any]) -> None:
        m["model"]["version"] = version

    out = resign(src, dst, keys, edit)
    model = onnx.load(str(out / "model.onnx"))
    g = model.graph
    for node in g.node:
        node.output[:] = ["score_fast" if o == "score" else o for o in node.output]
    flat = 1
    for d in g.input[0].type.tensor_type.shape.dim[1:]:
        flat *= d.dim_value
    rng = np.random.default_rng(0)
    g.initializer.extend([
        numpy_helper.from_array((rng.standard_normal((flat, width)) * 0.01).astype(np.float32), "slow_w0"),
        numpy_helper.from_array((rng.standard_normal((width, width)) * 0.01).astype(np.float32), "slow_w"),
        numpy_helper.from_array(np.array([0, flat], dtype=np.int64), "slow_shape"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "slow_axes"),
    ])
    nodes = [helper.make_node("Reshape", ["window", "slow_shape"], ["slow_x"]),
             helper.make_node("MatMul", ["slow_x", "slow_w0"], ["slow_h0"]),
             helper.make_node("Tanh", ["slow_h0"], ["slow_t0"])]
    for i in range(layers):
        nodes += [helper.make_node("MatMul", [f"slow_t{i}", "slow_w"], [f"slow_h{i + 1}"]),
                  helper.make_node("Tanh", [f"slow_h{i + 1}"], [f"slow_t{i + 1}"])]
    nodes += [helper.make_node("ReduceSum", [f"slow_t{layers}", "slow_axes"], ["slow_sum"], keepdims=0),
              helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
              helper.make_node("Add", ["score_fast", "slow_nothing"], ["score"])]
    g.node.extend(nodes)
    del g.value_info[:]
    assert g.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    onnx.save(model, str(out / "model.onnx"))
    m = json.loads((out / "manifest.json").read_text())
    m["files"]["model.onnx"] = {"sha256": sha256_file(out / "model.onnx"), "bytes": (out / "model.onnx").stat().st_size}
    (out / "manifest.json").write_text(json.dumps(m, indent=1))
    from export.signing import load_private_key, sign_bundle

    sign_bundle(out, load_private_key(keys))
    return out


def attack_slow_model(t: Target, bundle: Path, work: Path) -> list[Row]:
    """A signed, valid model that is many times slower: refused before it replaces the running one."""
    since = time.time()
    before = t.running_version()
    slow = slow_bundle(bundle, work / "slow", t.keys, "50.0.0")
    uid = "slow1"
    t.send(update_messages(slow, uid, 256 * 1024))
    out = _outcome_for(t, uid, 60)
    ok = out.get("event") == "refused" and "slow" in out.get("reason", "") and t.running_version() == before
    return [row("valid but much slower model", "signed, golden windows match, 24 extra 2048-wide layers",
                ok and t.wait_good(5), f"{out.get('event')}: {out.get('reason', '')[:90]}", t, since)]


# ---- the gateway's MQTT session -------------------------------------------------------------------

def attack_client_id_takeover(t: Target, seconds: float = 6.0) -> list[Row]:
    """Clients that connect with a client id the gateway's topics suggest cannot take over its session.

    An MQTT broker disconnects a client when another connects with the same client id, and a
    persistent session (``clean_start`` false) goes to the newcomer with its subscriptions and the
    readings queued for it. An attacker that reconnects whenever it is kicked off keeps a gateway
    with a guessable id off the broker and reads its sensor stream.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    out = []
    for variant, cid in ((f"'edge-aae-{GATEWAY}' (the id pattern of earlier releases)", f"edge-aae-{GATEWAY}"),
                         (f"'{GATEWAY}' (the gateway id)", GATEWAY)):
        since = time.time()
        stolen: list[str] = []
        kicked: list[str] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.on_message = lambda _c, _u, msg, stolen=stolen: stolen.append(msg.topic)
        c.on_disconnect = lambda _c, _u, _f, rc, _p, kicked=kicked: kicked.append(str(rc))
        c.reconnect_delay_set(min_delay=1, max_delay=1)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call,unused-ignore]
        props.SessionExpiryInterval = 86400
        c.connect("127.0.0.1", t.broker.port, clean_start=False, properties=props)
        c.loop_start()  # reconnects whenever the broker drops it
        time.sleep(seconds)
        c.disconnect()
        c.loop_stop()
        scored = t.wait_good(10)
        gap = t.unscored_s(since)
        ok = scored and gap < 2.0 and not stolen
        out.append(row("client id takeover", variant, ok,
                       f"attacker received {len(stolen)} gateway messages, was dropped {len(kicked)} times; "
                       f"good asset {'still scored' if scored else 'NOT scored'}", t, since))
    return out


def attack_asset_table(t: Target, channels: list[str], rows_: np.ndarray, max_assets: int = 1000,
                       idle_s: float = 60.0) -> list[Row]:
    """One reading each for ``max_assets`` made-up assets fills the table; a new real asset still gets scored.

    ``max_assets`` and ``idle_s``: the daemon's ``runtime.max_assets`` and ``runtime.asset_idle_s``.
    Once the made-up assets have been silent ``idle_s`` seconds, a new asset takes the place of one.
    """
    since = time.time()
    reading = json.dumps({"ts": time.time(), "values": dict(zip(channels, map(float, rows_[0]), strict=True))})
    infos = [t.attacker.publish(f"{BASE}/sensors/filler-{i}", reading, qos=1) for i in range(max_assets)]
    for info in infos:
        info.wait_for_publish(60)
    newcomer = publisher(t.broker.port, client_id="new-plc")
    t0 = time.monotonic()
    scored_after = None
    try:
        i = 0
        while time.monotonic() - t0 < idle_s + 30:
            row_ = rows_[i % len(rows_)]
            payload = {"ts": time.time(), "values": {c: float(v) for c, v in zip(channels, row_, strict=True)}}
            newcomer.publish(f"{BASE}/sensors/newcomer", json.dumps(payload), qos=1)
            i += 1
            time.sleep(0.05)
            if i % 20 == 0 and any(m.get("ts", 0) >= since for m in t.rec.json(f"{BASE}/anomaly/newcomer/score")):
                scored_after = time.monotonic() - t0
                break
    finally:
        newcomer.disconnect()
    refused = sum(m["reason"] == "too_many_assets" and m["asset"] == "newcomer" for m in t.errors(since))
    ok = scored_after is not None and scored_after <= idle_s + 15 and t.wait_good(10)
    return [row("asset table filled", f"{max_assets} made-up assets, one reading each, then a new asset", ok,
                f"new asset refused {refused} time(s) (too_many_assets), then scored after "
                + (f"{scored_after:.0f} s" if scored_after is not None else "never")
                + f" (runtime.asset_idle_s = {idle_s:g})", t, since)]
