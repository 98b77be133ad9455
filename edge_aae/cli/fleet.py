"""Subcommands on the broker's other side: ``alerts``, ``deploy`` and ``replay`` (torch-free)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from edge_aae.cli.common import add_column_args
from edge_aae.core.errors import UsageError


def _add_broker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--root", default="edge-aae", help="topic root (default: edge-aae)")
    p.add_argument("--tls-ca", default="", metavar="FILE", help="CA certificate for mqtts://")
    p.add_argument("--username", default="", metavar="U", help="MQTT user name")
    p.add_argument("--password-file", type=Path, metavar="FILE",
                   help="file holding the password (default: $EDGE_AAE_MQTT_PASSWORD when --username is given)")


def _add_rollout_args(p: argparse.ArgumentParser) -> None:
    """``deploy``'s targets (one gateway, a list, a file or all online) and rollout limits."""
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--gateway", metavar="GW[,GW...]", help="gateway id, or several separated by commas")
    target.add_argument("--gateways-file", type=Path, metavar="FILE",
                        help="gateway ids, one per line (# comments and blank lines ignored)")
    target.add_argument("--all", action="store_true",
                        help="every gateway whose retained status under --root says online")
    p.add_argument("--max-parallel", type=int, default=4, metavar="N", help="gateways updated at once (default: 4)")
    p.add_argument("--abort-after", type=int, default=0, metavar="K",
                   help="after K failures start no further gateway (default: 0, never)")
    p.add_argument("--canary", type=int, default=0, metavar="N",
                   help="update the first N gateways alone and watch them before the rest (default: 0)")
    p.add_argument("--canary-wait", type=float, default=60.0, metavar="S",
                   help="seconds the canaries must stay online, healthy and on the new version (default: 60)")


def register(sub: Any) -> None:
    """Add ``alerts`` and ``deploy`` to the top-level parser's subparsers."""
    p = sub.add_parser("alerts", help="watch alerts and gateway status across a fleet (live table or JSON lines)",
                       description="Watch alerts and gateway status. Example: edge-aae alerts --broker "
                                   "mqtt://localhost:1883 --gateway pump-gw-01")
    _add_broker_args(p)
    p.add_argument("--gateway", default="+", help="only this gateway (default: all)")
    p.add_argument("--asset", default="+", help="only this asset (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("deploy", help="push a signed bundle to a gateway over MQTT (over-the-air update)",
                       description="Push a signed bundle to a gateway and wait for its outcome. Example: "
                                   "edge-aae deploy bundles/pump --broker mqtt://localhost:1883 --gateway pump-gw-01")
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="signed bundle folder")
    _add_broker_args(p)
    _add_rollout_args(p)
    p.add_argument("--asset", default="", help="replace this asset's model (default: the gateway's default model)")
    p.add_argument("--chunk-kb", type=int, default=128, help="split the bundle into messages of this size "
                                                             "(default: 128)")
    p.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="seconds to wait for the outcome (0: none; default: 60)")
    p.set_defaults(func=cmd_deploy)
    register_replay(sub)
    register_feedback(sub)

    p = sub.add_parser("record", help="write alerts, statuses and optionally scores from MQTT into a database",
                       description="Record the fleet's alerts into SQLite or PostgreSQL (idempotent on alert id, "
                                   "persistent MQTT session, acknowledged after commit). Example: edge-aae record "
                                   "--broker mqtt://localhost:1883 --db sqlite:///alerts.db")
    _add_broker_args(p)
    p.add_argument("--db", required=True, metavar="URL",
                   help="sqlite:///FILE (default kind) or postgresql://USER@HOST:PORT/DB")
    p.add_argument("--share", default="", metavar="GROUP",
                   help="MQTT 5 shared subscription group: recorders in one group split the messages")
    p.add_argument("--client-id", default="", metavar="ID",
                   help="MQTT client id; the persistent session is kept under it (default: from host and group)")
    p.add_argument("--scores-every", type=int, default=0, metavar="N",
                   help="also record one score message in N per asset (default: 0, none)")
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("history", help="summarize the alert history database (table and HTML report)",
                       description="Alerts per asset from the database edge-aae record writes. Example: "
                                   "edge-aae history --db sqlite:///alerts.db --since 7d")
    p.add_argument("--db", required=True, metavar="URL", help="sqlite:///FILE or postgresql://...")
    p.add_argument("--asset", default="", help="only this asset")
    p.add_argument("--since", default="7d", help="period: 90m, 12h, 7d, 2w (default: 7d)")
    p.add_argument("--out", type=Path, metavar="DIR", help="also write DIR/history.html (with a plot)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("fleet", help="list the gateways under a topic root: state, health, models, last seen",
                       description="List every gateway's retained status. Example: "
                                   "edge-aae fleet --broker mqtt://localhost:1883")
    _add_broker_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object per gateway instead of the table")
    p.add_argument("--wait", type=float, default=2.0, metavar="S",
                   help="seconds to collect retained statuses (default: 2)")
    p.set_defaults(func=cmd_fleet)


def register_feedback(sub: Any) -> None:
    """``ack``, ``mute``, ``label`` and ``collect``: operator feedback, confirmed by the gateway."""
    def common(p: argparse.ArgumentParser) -> None:
        _add_broker_args(p)
        p.add_argument("--gateway", required=True, metavar="GW", help="gateway id")
        p.add_argument("--by", default="", help="who sends it (default: the --username, else empty)")
        p.add_argument("--wait", type=float, default=30.0, metavar="S",
                       help="seconds to wait for the gateway's confirmation (default: 30)")

    p = sub.add_parser("ack", help="acknowledge an alert on its gateway",
                       description="Acknowledge an alert (its alert_id). Example: edge-aae ack 3f1c9a0e7b2d4c11 "
                                   "--broker mqtt://localhost:1883 --gateway pump-gw-01")
    p.add_argument("alert_id", metavar="ALERT_ID", help="the alert episode (alert_id in its messages)")
    common(p)
    p.set_defaults(func=cmd_feedback, command="ack")
    p = sub.add_parser("mute", help="mute an asset's alerts for a while (still raised and recorded, marked muted)",
                       description="Mute an asset: its alerts are still raised, published and recorded, marked "
                                   "\"muted\": true. Example: edge-aae mute pump7 --for 2h --broker "
                                   "mqtt://localhost:1883 --gateway pump-gw-01")
    p.add_argument("asset", metavar="ASSET")
    p.add_argument("--for", dest="for_", default="1h", metavar="DURATION",
                   help="how long: 90m, 2h, 1d (0 unmutes; default: 1h)")
    common(p)
    p.set_defaults(func=cmd_feedback, command="mute")
    p = sub.add_parser("label", help="label an alert false_alarm or confirmed (its readings are kept for retraining)",
                       description="Label an alert; the gateway keeps its readings for edge-aae collect. Example: "
                                   "edge-aae label 3f1c9a0e7b2d4c11 false_alarm --note 'valve test' --broker "
                                   "mqtt://localhost:1883 --gateway pump-gw-01")
    p.add_argument("alert_id", metavar="ALERT_ID")
    p.add_argument("label", choices=["false_alarm", "confirmed"])
    p.add_argument("--note", default="", help="free text (at most 500 characters)")
    common(p)
    p.set_defaults(func=cmd_feedback, command="label")
    p = sub.add_parser("collect", help="pull a gateway's labelled alerts as CSV files (for retraining)",
                       description="Write every labelled alert kept on the gateway as OUT/ASSET_ALERTID_LABEL.csv "
                                   "and OUT/labels.json. Example: edge-aae collect --broker mqtt://localhost:1883 "
                                   "--gateway pump-gw-01 --out labelled/")
    common(p)
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the CSV files")
    p.set_defaults(func=cmd_feedback, command="collect")


def cmd_feedback(args: argparse.Namespace) -> int:
    """``edge-aae ack | mute | label | collect``."""
    from edge_aae.client.deploy import read_password
    from edge_aae.client.feedback import send_command, write_collected
    from edge_aae.client.history_report import parse_since
    from edge_aae.client.rollout import BrokerLogin

    if not args.gateway or any(c in args.gateway for c in "/+#"):
        raise UsageError(f"--gateway {args.gateway!r}: one topic level, without '/', '+' or '#'")
    login = BrokerLogin(args.broker, args.root, args.tls_ca, args.username,
                        read_password(args.password_file, args.username))
    cmd: dict[str, Any] = {"command": args.command, "by": args.by or args.username}
    if args.command in ("ack", "label"):
        cmd["alert_id"] = args.alert_id
    if args.command == "label":
        if len(args.note) > 500:
            raise UsageError(f"--note: {len(args.note)} characters, at most 500")
        cmd |= {"label": args.label, "note": args.note}
    if args.command == "mute":
        try:
            cmd |= {"asset": args.asset, "for_s": 0.0 if args.for_.strip() == "0" else parse_since(args.for_)}
        except UsageError:
            raise UsageError(f"--for {args.for_!r}: expected a number and a unit, e.g. 90m, 2h or 1d (0 unmutes)") \
                from None
    collected: list[dict[str, Any]] = []
    outcome = send_command(login, args.gateway, cmd, args.wait, collected if args.command == "collect" else None)
    print(f"{args.gateway}: {args.command} applied: {outcome.get('detail', '')}")
    if args.command == "collect":
        files = write_collected(collected, args.out)
        print(f"wrote {len(files)} labelled alert(s) to {args.out} (and {args.out / 'labels.json'})")
    return 0


def register_replay(sub: Any) -> None:
    """Add ``replay``: a CSV published as a gateway's readings."""
    p = sub.add_parser("replay", help="publish a CSV as one asset's readings (QoS 1, in order, acknowledged)",
                       description="Publish a CSV (read as train reads it) to ROOT/GW/sensors/ASSET, each message "
                                   "acknowledged before the next. Example: edge-aae replay data/pump/test.csv "
                                   "--broker mqtt://localhost:1883 --gateway dev-01 --asset pump1 --speed 60")
    p.add_argument("file", type=Path, metavar="FILE", help="CSV (header; , ; or tab) or headerless numeric text")
    _add_broker_args(p)
    p.add_argument("--gateway", required=True, metavar="GW", help="gateway id")
    p.add_argument("--asset", required=True, help="asset name (the last level of the readings topic)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, metavar="X",
                      help="X times recorded time, from the file's sample period (default: 1, real time)")
    pace.add_argument("--rate", type=float, metavar="N", help="N readings per second (0: as fast as acknowledged)")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="readings per message (default: 1)")
    p.add_argument("--loop", action="store_true", help="start over at the end, timestamps moved on (Ctrl-C stops)")
    add_column_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """``edge-aae replay``."""
    import sys

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_aae.cli.common import channels_arg
    from edge_aae.client.deploy import read_password
    from edge_aae.core.data import load_series
    from edge_aae.core.errors import EdgeAAEError
    from edge_aae.core.protocol import Topics, parse_broker_url
    from edge_aae.devtools.replay import ReplayPlan, replay

    if args.batch < 1:
        raise UsageError(f"--batch must be at least 1, got {args.batch}")
    if args.speed <= 0 or (args.rate is not None and args.rate < 0):
        raise UsageError("--speed must be > 0 and --rate >= 0")
    for name in ("root", "gateway", "asset"):
        value = getattr(args, name)
        if not value or any(c in value for c in "/+#"):
            raise UsageError(f"--{name} {value!r}: one topic level, without '/', '+' or '#'")
    host, port, tls = parse_broker_url(args.broker)
    data = load_series(args.file, time_col=args.time_col, channels=channels_arg(args), max_nan_run=0)
    topic = Topics(args.root, args.gateway).sensors(args.asset)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if tls:
        client.tls_set(ca_certs=args.tls_ca or None)
    if args.username:
        client.username_pw_set(args.username, read_password(args.password_file, args.username))
    try:
        client.connect(host, port)
    except OSError as exc:
        raise EdgeAAEError(f"cannot reach the broker at {host}:{port} ({exc})") from None
    client.loop_start()
    plan = ReplayPlan(args.speed, args.rate, args.batch, args.loop)

    def progress(sent: int, total: int) -> None:
        if not args.quiet:
            lap = f"{sent % total or total}/{total}" if args.loop else f"{sent}/{total}"
            print(f"\r{topic}: {lap} readings", end="", file=sys.stderr, flush=True)

    try:
        sent = replay(client, topic, data, plan, progress)
    except TimeoutError as exc:
        raise EdgeAAEError(f"{exc} (is the broker up, and may this user publish to {topic}?)") from None
    finally:
        if not args.quiet:
            print(file=sys.stderr)
        client.disconnect()
        client.loop_stop()
    print(f"published {sent} readings of {args.file} to {topic} (QoS 1, each acknowledged)")
    return 0


def cmd_alerts(args: argparse.Namespace) -> int:
    """``edge-aae alerts``."""
    from edge_aae.client.alerts_view import run_alerts

    logging.getLogger().setLevel(logging.ERROR)  # the table is the output; paho retries are expected
    return run_alerts(args.broker, root=args.root, gateway=args.gateway, asset=args.asset, tls_ca=args.tls_ca,
                      username=args.username, password_file=args.password_file, as_json=args.json)


def cmd_deploy(args: argparse.Namespace) -> int:
    """``edge-aae deploy``."""
    from edge_aae.client.deploy import deploy_bundle, read_password
    from edge_aae.client.rollout import BrokerLogin, retained_statuses, rollout

    if args.chunk_kb < 1:
        raise UsageError("--chunk-kb must be at least 1")
    login = BrokerLogin(args.broker, args.root, args.tls_ca, args.username,
                        read_password(args.password_file, args.username))
    if args.all:
        gateways = sorted(g for g, st in retained_statuses(login).items() if st.get("state") == "online")
        if not gateways:
            raise UsageError(f"--all: no gateway under {args.root}/ reports online on {args.broker}")
    elif args.gateways_file is not None:
        try:
            lines = args.gateways_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"--gateways-file {args.gateways_file}: cannot read it ({exc.strerror})") from None
        gateways = [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]
        if not gateways:
            raise UsageError(f"--gateways-file {args.gateways_file}: no gateway ids in it")
    else:
        gateways = [g.strip() for g in args.gateway.split(",") if g.strip()]
    bad = [g for g in gateways if any(c in g for c in "+#/ ")]
    if bad:
        raise UsageError(f"gateway id {bad[0]!r}: no spaces, '/', '+' or '#'")
    single = len(gateways) == 1 and not (args.all or args.gateways_file or args.canary or args.abort_after)
    if single:
        return deploy_bundle(args.bundle, args.broker, gateways[0], root=args.root, asset=args.asset,
                             tls_ca=args.tls_ca, username=args.username, password=login.password,
                             chunk_kb=args.chunk_kb, wait_s=args.wait)
    code, _ = rollout(args.bundle, login, gateways, asset=args.asset, max_parallel=args.max_parallel,
                      abort_after=args.abort_after, canary=args.canary, canary_wait_s=args.canary_wait,
                      chunk_kb=args.chunk_kb, wait_s=args.wait)
    return code


def cmd_fleet(args: argparse.Namespace) -> int:
    """``edge-aae fleet``."""
    import json
    import time

    from edge_aae.cli.common import print_table
    from edge_aae.client.deploy import read_password
    from edge_aae.client.rollout import BrokerLogin, retained_statuses

    login = BrokerLogin(args.broker, args.root, args.tls_ca, args.username,
                        read_password(args.password_file, args.username))
    statuses = retained_statuses(login, wait_s=args.wait)
    if args.json:
        for gw in sorted(statuses):
            print(json.dumps({"gateway": gw, **statuses[gw]}))
        return 0
    if not statuses:
        print(f"no gateway has a retained status under {args.root}/ on {args.broker}")
        return 0
    now = time.time()
    rows = []
    for gw in sorted(statuses):
        st = statuses[gw]
        models = st.get("models")
        models = models if isinstance(models, dict) else {}
        ts = st.get("ts")
        age = f"{now - ts:.0f} s ago" if isinstance(ts, int | float) else "?"
        healthy = st.get("healthy")
        health = "yes" if healthy is True else f"no: {st.get('problem', '?')}" if healthy is False else "-"
        rows.append((gw, str(st.get("state", "?")), health,
                     ", ".join(f"{k}={v.get('version', '?')}" for k, v in sorted(models.items())
                               if isinstance(v, dict)) or "-",
                     str(st.get("assets_total", "-")), age))
    print_table(["gateway", "state", "healthy", "models", "assets", "last status"], rows)
    online = sum(1 for st in statuses.values() if st.get("state") == "online")
    print(f"{len(statuses)} gateway(s), {online} online")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """``edge-aae record``."""
    import signal

    from edge_aae.client.deploy import read_password
    from edge_aae.client.recorder import HistoryRecorder, RecordOptions

    logging.getLogger().setLevel(logging.INFO)
    rec = HistoryRecorder(RecordOptions(args.broker, args.db, root=args.root, share=args.share,
                                        client_id=args.client_id, scores_every=args.scores_every,
                                        tls_ca=args.tls_ca, username=args.username,
                                        password=read_password(args.password_file, args.username)))
    signal.signal(signal.SIGTERM, lambda *_: rec.stop())
    signal.signal(signal.SIGINT, lambda *_: rec.stop())
    print(f"recording {args.root}/ from {args.broker} into {args.db} (Ctrl-C stops)", flush=True)
    return rec.run()


def cmd_history(args: argparse.Namespace) -> int:
    """``edge-aae history``."""
    import time

    from edge_aae.cli.common import print_table
    from edge_aae.client.history_db import open_db
    from edge_aae.client.history_report import parse_since, summarize, summarize_feedback, write_report

    since = parse_since(args.since)
    try:
        db = open_db(args.db)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"--db {args.db}: cannot open it ({str(exc).strip().splitlines()[0]})") from None
    try:
        summaries, rows = summarize(db, time.time() - since, args.asset)
        feedback = summarize_feedback(db, time.time() - since, args.asset)
    finally:
        db.close()
    if not summaries:
        print(f"no alerts in the last {args.since}" + (f" for asset {args.asset}" if args.asset else ""))
    else:
        print_table(["gateway", "asset", "raised", "cleared", "last raised (UTC)", "median duration", "top channel"],
                    [(s.gateway, s.asset, str(s.raised), str(s.cleared),
                      time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.last_raised)) if s.last_raised else "-",
                      "-" if s.median_duration_s is None else f"{s.median_duration_s:.0f} s", s.top_channel)
                     for s in summaries])
    if feedback.acked or feedback.labels:
        ack = "-" if feedback.median_ack_s is None else f"{feedback.median_ack_s:.0f} s"
        print(f"\nacknowledged: {feedback.acked} (median time to acknowledge {ack})")
        if feedback.labels:
            print_table(["model version", "label", "alerts"],
                        [(v, label, str(n)) for (v, label), n in sorted(feedback.labels.items())])
    if args.out:
        path = write_report(args.out, summaries, rows, f"edge-aae alert history, last {args.since}", feedback)
        print(f"report: {path.resolve()}")
    return 0