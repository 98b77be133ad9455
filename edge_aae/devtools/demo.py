"""``edge-aae demo``: synthetic machine -> trained AAE -> INT8 bundle -> daemon -> live alerts -> report.

Everything runs locally: a mosquitto on a free loopback port (unless ``--broker``),
the daemon as a child process, the test stream replayed over MQTT faster than
real time. Child processes are stopped on exit and on Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge_aae.client.subscriber import Alert, AlertSubscriber, GatewayStatus
from edge_aae.core.errors import EdgeAAEError

log = logging.getLogger(__name__)
GATEWAY, ASSET = "demo-gw", "pump1"


@dataclass
class DemoResult:
    """What the summary and the report are made of."""

    faults: list[dict[str, Any]]
    alerts: list[Alert]
    scores: list[dict[str, Any]] = field(default_factory=list)
    threshold: float = float("nan")
    readings: int = 0
    replay_s: float = 0.0
    window_len: int = 32


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


def summarize(result: DemoResult) -> dict[str, Any]:
    """Faults detected, false alerts, median detection delay (data seconds) and throughput."""
    raised = [a for a in result.alerts if a.event == "raised"]
    slack = result.window_len  # a window that ends just after a fault still holds it
    detected, delays = [], []
    for f in result.faults:
        inside = [a for a in raised if f["start_ts"] <= a.ts <= f["end_ts"] + slack]
        detected.append(bool(inside))
        if inside:
            delays.append(min(a.ts for a in inside) - f["start_ts"])
    false_alerts = [a for a in raised
                    if not any(f["start_ts"] <= a.ts <= f["end_ts"] + slack for f in result.faults)]
    return {
        "faults": len(result.faults), "faults_detected": int(sum(detected)),
        "missed": [f["kind"] for f, d in zip(result.faults, detected, strict=True) if not d],
        "false_alerts": len(false_alerts),
        "median_detection_delay_s": float(np.median(delays)) if delays else None,
        "readings": result.readings,
        "throughput_readings_per_s": result.readings / result.replay_s if result.replay_s else None,
    }


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary for people: labels, rounded numbers, "none" rather than an empty list."""
    delay = summary["median_detection_delay_s"]
    rate = summary["throughput_readings_per_s"]
    return [("faults detected", f"{summary['faults_detected']} of {summary['faults']}"),
            ("faults missed", ", ".join(summary["missed"]) or "none"),
            ("false alerts", str(summary["false_alerts"])),
            ("median detection delay", "-" if delay is None else f"{delay:.0f} s of data"),
            ("readings replayed", f"{summary['readings']:,}"),
            ("throughput", "-" if rate is None else f"{rate:,.0f} readings/s")]


def write_report(out_dir: Path, result: DemoResult, summary: dict[str, Any]) -> Path:
    """``report.html`` with two plots (PNG beside it): scores vs threshold, channels to blame."""
    import base64
    from datetime import UTC, datetime

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def utc(unix_s: float) -> float:  # the plot and the alert table use the same clock: UTC
        return float(mdates.date2num(datetime.fromtimestamp(unix_s, tz=UTC)))

    out_dir.mkdir(parents=True, exist_ok=True)
    scores = sorted(result.scores, key=lambda s: s["ts"])
    ts = np.array([utc(s["ts"]) for s in scores])
    sc = np.array([s["score"] for s in scores])
    fig, ax = plt.subplots(figsize=(13, 4.2))
    ax.plot(ts, sc, lw=0.6, color="tab:blue", label="score (from the daemon)")
    ax.axhline(result.threshold, color="tab:red", lw=1, ls="--", label=f"threshold {result.threshold:.1f}")
    for i, f in enumerate(result.faults):
        ax.axvspan(utc(f["start_ts"]), utc(f["end_ts"]), color="orange", alpha=0.25,
                   label="injected fault" if i == 0 else None)
    for i, a in enumerate(x for x in result.alerts if x.event == "raised"):
        ax.axvline(utc(a.ts), color="black", lw=0.8, alpha=0.7, label="alert raised" if i == 0 else None)
    ax.set_yscale("symlog", linthresh=1.0)  # normal scores sit around 0, faults reach the hundreds
    ax.set_xlabel("data time (UTC), as in the alert table")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    ax.set_ylabel("anomaly score (symlog)")
    ax.set_title(f"{summary['faults_detected']}/{summary['faults']} faults detected, "
                 f"{summary['false_alerts']} false alert(s)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=8, ncol=4)  # below: peaks stay visible
    fig.tight_layout()
    p1 = out_dir / "scores.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)

    channels = list(scores[0]["channel_scores"]) if scores else []
    by_ts = {s["ts"]: s for s in scores}
    rows, labels = [], []
    for f in result.faults:
        inside = [by_ts[t]["channel_scores"] for t in by_ts if f["start_ts"] <= t <= f["end_ts"]]
        if not inside:
            continue
        mean = np.array([[cs[c] for c in channels] for cs in inside]).mean(0)
        rows.append(mean / mean.sum())
        labels.append(f"{f['kind']} ({', '.join(f['channels'])})")
    fig, ax = plt.subplots(figsize=(11, 0.45 * max(len(rows), 2) + 1.8))
    if rows:
        im = ax.imshow(np.array(rows), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(channels)), channels, rotation=30, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        fig.colorbar(im, ax=ax, label="share of the score")
    ax.set_title("Channels to blame: mean share of each channel's contribution during each fault\n"
                 "(the channels the fault was injected into in brackets)", fontsize=10)
    fig.tight_layout()
    p2 = out_dir / "channels.png"
    fig.savefig(p2, dpi=110)
    plt.close(fig)

    def img(p: Path) -> str:
        return f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" width="100%">'

    rows_html = "".join(f"<tr><td>{label}</td><td>{value}</td></tr>" for label, value in summary_rows(summary))
    alerts_html = "".join(
        f"<tr><td>{a.event}</td><td>{a.asset}</td><td>{time.strftime('%H:%M:%S', time.gmtime(a.since))}</td>"
        f"<td>{a.ratio:.2f}</td><td>{', '.join(f'{c} {s:.0%}' for c, s in a.top_channels)}</td></tr>"
        for a in result.alerts)
    html = (f"<html><head><meta charset='utf-8'><title>edge-aae demo</title></head><body>"
            f"<h1>edge-aae demo report</h1><table border=1>{rows_html}</table>"
            f"<h2>Scores against the threshold</h2>{img(p1)}<h2>Channels to blame</h2>{img(p2)}"
            f"<h2>Alerts</h2><table border=1><tr><th>event</th><th>asset</th><th>since (UTC)</th>"
            f"<th>score/threshold</th><th>top channels</th></tr>{alerts_html}</table></body></html>")
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def run_demo(out_dir: Path, build_bundle: Callable[..., Any], broker_url: str | None = None, fast: bool = False,
             out: TextIO = sys.stdout, rows_per_s: float = 1500.0) -> int:
    """The whole journey; returns the exit status (0 when every step ran).

    ``build_bundle`` is :func:`export.bundle.build_bundle`, passed in by the CLI: the package
    never imports the ``export`` toolchain itself.
    """
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_aae.core.data import load_series
    from edge_aae.core.protocol import parse_broker_url
    from edge_aae.devtools.mosquitto import Mosquitto
    from edge_aae.devtools.replay import publish_series
    from edge_aae.train import synth
    from edge_aae.train.config import TrainConfig
    from edge_aae.train.detector import AAEDetector

    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    _say(out, "1/6 simulating a pump with 8 sensors (normal training data, a test stream with 12 faults)")
    data_dir = out_dir / "data"
    synth.write_dataset(data_dir, synth.generate(seed=0), seed=0)
    faults = json.loads((data_dir / "faults.json").read_text())["faults"]

    _say(out, "2/6 training the adversarial autoencoder" + (" (--fast)" if fast else ""))
    cfg = TrainConfig(epochs=12, windows_per_epoch=6000) if fast else TrainConfig()
    det = AAEDetector(cfg).fit(load_series(data_dir / "train.csv"), progress=True)
    det.save(out_dir / "run")

    _say(out, "3/6 exporting to ONNX, quantizing to INT8 and checking parity")
    rep = build_bundle(out_dir / "run", out_dir / "bundle", version="1.0.0", force=True)
    gate = rep.int8
    _say(out, f"    model.onnx = {rep.default_kind.upper()}: {rep.default_reason}"
         + (f" (Spearman {gate.spearman:.4f}, decisions {gate.decision_agreement:.4f})" if gate else ""))

    broker: Mosquitto | None = None
    daemon: subprocess.Popen[bytes] | None = None
    sub: AlertSubscriber | None = None
    try:
        if broker_url is None:
            broker = Mosquitto(out_dir / "broker")
            broker.start()
            broker_url = broker.url
            _say(out, f"4/6 started mosquitto on {broker_url}")
        else:
            _say(out, f"4/6 using the broker at {broker_url}")
        host, port, _tls = parse_broker_url(broker_url)
        config = out_dir / "gateway.toml"
        config.write_text(f'gateway_id = "{GATEWAY}"\n[models]\ndefault = "{(out_dir / "bundle").resolve()}"\n'
                          f'[runtime]\nbatch_wait_ms = 5\n[alerting]\nk = 3\nn = 5\nm = 10\ncooldown_s = 30\n'
                          f'[publish]\nstats_interval_s = 5\n[outbox]\ndir = "{(out_dir / "outbox").resolve()}"\n')
        log_file = (out_dir / "daemon.log").open("wb")
        daemon = subprocess.Popen([sys.executable, "-m", "edge_aae.cli", "serve", "--config", str(config),
                                   "--broker", broker_url], stdout=log_file, stderr=subprocess.STDOUT)
        result = DemoResult(faults, [], threshold=float("nan"), window_len=det.config_.window_len)
        statuses: list[GatewayStatus] = []

        def on_alert(a: Alert) -> None:
            result.alerts.append(a)
            blame = ", ".join(f"{c} {s:.0%}" for c, s in a.top_channels)
            _say(out, f"    {a.event.upper():8s} {a.gateway}/{a.asset}  data time "
                      f"{time.strftime('%H:%M:%S', time.gmtime(a.ts))}  score/threshold {a.ratio:5.2f}  "
                      f"blame: {blame}")

        sub = AlertSubscriber(broker_url, root="edge-aae", gateway=GATEWAY, on_alert=on_alert,
                              on_status=statuses.append).start()
        scores_client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        scores_client.on_message = lambda _c, _u, m: result.scores.append(json.loads(m.payload))
        scores_client.connect(host, port)
        scores_client.subscribe(f"edge-aae/{GATEWAY}/anomaly/{ASSET}/score", qos=0)
        scores_client.loop_start()
        deadline = time.monotonic() + 60
        while not any(s.state == "online" for s in statuses):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise EdgeAAEError(f"the daemon did not start; see {out_dir / 'daemon.log'}")
            time.sleep(0.1)
        _say(out, f"5/6 daemon online; replaying {len(faults)} faults' worth of test data at "
                  f"{rows_per_s:.0f} readings/s (live alerts below)")
        test = load_series(data_dir / "test.csv", label_col="label")
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect(host, port)
        pub.loop_start()
        t0 = time.monotonic()
        publish_series(pub, f"edge-aae/{GATEWAY}/sensors/{ASSET}", test, batch=10, rows_per_s=rows_per_s)
        expected = len(test.timestamps) - det.config_.window_len + 1
        deadline = time.monotonic() + 60
        while len(result.scores) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        result.replay_s = time.monotonic() - t0
        result.readings = len(test.timestamps)
        time.sleep(0.5)
        if result.scores:
            result.threshold = float(result.scores[-1]["threshold"])
        pub.disconnect()
        scores_client.disconnect()
        summary = summarize(result)
        _say(out, "6/6 summary")
        _say(out, f"    faults detected        {summary['faults_detected']}/{summary['faults']}"
                  + (f" (missed: {', '.join(summary['missed'])})" if summary["missed"] else ""))
        _say(out, f"    false alerts           {summary['false_alerts']}")
        delay = summary["median_detection_delay_s"]
        _say(out, f"    median detection delay {delay:.0f} s of data" if delay is not None else
                  "    median detection delay n/a")
        _say(out, f"    throughput             {summary['throughput_readings_per_s']:.0f} readings/s "
                  f"through broker and daemon ({len(result.scores)} scores; replay paced at {rows_per_s:.0f}/s, "
                  "`edge-aae bench daemon` measures the ceiling)")
        report = write_report(out_dir / "report", result, summary)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        _say(out, f"    report: {report.resolve()}  (plots: scores.png, channels.png)")
        _say(out, f"    done in {time.monotonic() - t_start:.0f} s. Next steps: README.md")
        return 0
    finally:
        if sub is not None:
            sub.close()
        if daemon is not None and daemon.poll() is None:
            daemon.terminate()
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if broker is not None:
            broker.stop()
