"""Rollouts: one signed bundle to many gateways, with a canary, bounded parallelism and an abort rule.

Each gateway gets the same update as ``edge-aae deploy`` sends to one (its own connection, its
own outcome, confirmed on its retained status). ``--canary N`` installs on the first N gateways,
then watches their retained status for ``canary_wait_s``: a canary that goes offline, reports
itself unhealthy or stops serving the new version stops the rollout before anyone else gets it.
After ``abort_after`` failures no further gateway is started (those in flight finish); the rest
are reported as ``skipped``.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_aae.core.errors import EdgeAAEError, UsageError
from edge_aae.core.protocol import parse_broker_url

RETAINED_WAIT_S = 2.0  # how long retained status messages are collected


@dataclass
class GatewayOutcome:
    """What one gateway did with the update."""

    gateway: str
    outcome: str  # installed, refused, rolled_back, no answer, not confirmed, error, skipped, unhealthy
    previous: str = ""
    version: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Installed (and confirmed in service)."""
        return self.outcome == "installed"


@dataclass(frozen=True)
class BrokerLogin:
    """How to reach the broker (the same for every gateway of a rollout)."""

    url: str
    root: str = "edge-aae"
    tls_ca: str = ""
    username: str = ""
    password: str | None = None


def retained_statuses(login: BrokerLogin, wait_s: float = RETAINED_WAIT_S,
                      gateways: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The retained ``ROOT/+/status`` of every gateway (or of ``gateways``), by gateway id.

    Raises:
        EdgeAAEError: the broker cannot be reached or refuses the connection.

    """
    got: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def on_message(payload: dict[str, Any], topic: str) -> None:
        gw = topic.split("/")[-2]
        with lock:
            got[gw] = payload

    topics = [f"{login.root}/{g}/status" for g in gateways] if gateways else [f"{login.root}/+/status"]
    with Watcher(login, topics, on_message):
        time.sleep(wait_s)
    with lock:
        return dict(got)


class Watcher:
    """A connected client subscribed to ``topics``; JSON objects go to ``on_message``."""

    def __init__(self, login: BrokerLogin, topics: list[str],
                 on_message: Callable[[dict[str, Any], str], None]) -> None:
        host, port, tls = parse_broker_url(login.url)
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if tls:
            self._client.tls_set(ca_certs=login.tls_ca or None)
        if login.username:
            self._client.username_pw_set(login.username, login.password)
        self._connected = threading.Event()
        self._refused: list[str] = []

        def connected(c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if rc.is_failure:
                self._refused.append(str(rc))
            else:
                c.subscribe([(t, 1) for t in topics])
            self._connected.set()

        def message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                data = json.loads(msg.payload)
            except ValueError:
                return
            if isinstance(data, dict):
                on_message(data, msg.topic)

        self._client.on_connect = connected
        self._client.on_message = message
        self._where = f"{host}:{port}"
        try:
            self._client.connect(host, port)
        except OSError as exc:
            raise EdgeAAEError(f"cannot reach the broker at {self._where} ({exc})") from None

    def __enter__(self) -> Watcher:
        self._client.loop_start()
        if not self._connected.wait(15) or self._refused:
            self.__exit__()
            raise EdgeAAEError(f"broker {self._where} refused the connection: "
                               f"{self._refused[0] if self._refused else 'timeout'}")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: str, timeout_s: float = 15.0) -> None:
        """Publish with QoS 1 and wait for the broker's acknowledgement.

        Raises:
            EdgeAAEError: not acknowledged in time (down, or the ACL forbids the topic).

        """
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            pass
        if not info.is_published():
            raise EdgeAAEError(f"the broker at {self._where} did not acknowledge {topic} within {timeout_s:g} s "
                               "(is it up, and may this user publish there?)")


def watch_canaries(login: BrokerLogin, outcomes: list[GatewayOutcome], wait_s: float,
                   asset: str = "") -> dict[str, str]:
    """Watch the canaries' retained status for ``wait_s``: gateway -> problem, for each that failed."""
    problems: dict[str, str] = {}
    version = {o.gateway: o.version for o in outcomes}
    key = asset or "default"
    lock = threading.Lock()

    def on_status(st: dict[str, Any], topic: str) -> None:
        gw = topic.split("/")[-2]
        models = st.get("models")
        slot = models.get(key) if isinstance(models, dict) else None
        serving = slot.get("version") if isinstance(slot, dict) else None
        problem = ""
        if st.get("state") != "online":
            problem = f"went {st.get('state')}"
        elif st.get("healthy") is False:
            problem = f"unhealthy: {st.get('problem', '?')}"
        elif serving is not None and serving != version.get(gw):
            problem = f"serves {serving} instead of {version.get(gw)} (rolled back?)"
        if problem:
            with lock:
                problems.setdefault(gw, problem)

    with Watcher(login, [f"{login.root}/{o.gateway}/status" for o in outcomes], on_status):
        time.sleep(wait_s)
    with lock:
        return dict(problems)


def rollout(bundle: Path, login: BrokerLogin, gateways: list[str], *, asset: str = "", max_parallel: int = 4,
            abort_after: int = 0, canary: int = 0, canary_wait_s: float = 60.0, chunk_kb: int = 128,
            wait_s: float = 60.0, out: TextIO = sys.stdout) -> tuple[int, list[GatewayOutcome]]:
    """Deploy ``bundle`` to every gateway in ``gateways``; returns (exit status, outcomes in order).

    Args:
        bundle: signed bundle folder.
        login: broker and topic root.
        gateways: gateway ids, in rollout order (canaries first).
        asset: replace this asset's model instead of the default one.
        max_parallel: gateways updated at once.
        abort_after: stop starting new gateways after this many failures (0: never).
        canary: first this many gateways alone, then ``canary_wait_s`` of healthy status before the rest.
        canary_wait_s: seconds the canaries must stay online, healthy and on the new version.
        chunk_kb: message size of the update.
        wait_s: per gateway, seconds to wait for its outcome.
        out: where the live table goes.

    The exit status is 0 only when every targeted gateway installed the bundle.

    Raises:
        UsageError: no gateways, or nonsensical limits.

    """
    from edge_aae.client.deploy import deploy_bundle

    if not gateways:
        raise UsageError("no gateways to deploy to")
    if len(set(gateways)) != len(gateways):
        raise UsageError("a gateway is listed twice")
    if max_parallel < 1 or abort_after < 0 or canary < 0:
        raise UsageError("--max-parallel must be >= 1, --abort-after and --canary >= 0")
    results: dict[str, GatewayOutcome] = {}
    failures = 0
    width = max(12, *(len(g) for g in gateways))
    out.write(f"{'gateway':<{width}}  {'previous':>9}  {'new':<9}  {'outcome':<13}  reason\n")

    def one(gw: str) -> GatewayOutcome:
        rep: dict[str, Any] = {}
        try:
            deploy_bundle(bundle, login.url, gw, root=login.root, asset=asset, tls_ca=login.tls_ca,
                          username=login.username, password=login.password, chunk_kb=chunk_kb, wait_s=wait_s,
                          out=io.StringIO(), report=rep)
        except EdgeAAEError as exc:
            return GatewayOutcome(gw, "error", rep.get("previous", ""), rep.get("version", ""), str(exc))
        return GatewayOutcome(gw, str(rep.get("outcome", "error")), str(rep.get("previous", "")),
                              str(rep.get("version", "")), str(rep.get("reason", "")))

    def show(o: GatewayOutcome) -> None:
        out.write(f"{o.gateway:<{width}}  {o.previous or '-':>9}  {o.version or '-':<9}  {o.outcome:<13}  "
                  f"{o.reason}\n")
        out.flush()

    def run_wave(wave: list[str]) -> None:
        nonlocal failures
        queue = list(wave)
        running: dict[Future[GatewayOutcome], str] = {}
        with ThreadPoolExecutor(max_workers=max_parallel) as pool:
            while queue or running:
                while queue and len(running) < max_parallel and not (abort_after and failures >= abort_after):
                    gw = queue.pop(0)
                    running[pool.submit(one, gw)] = gw
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    running.pop(fut)
                    o = fut.result()
                    results[o.gateway] = o
                    failures += not o.ok
                    show(o)

    canaries, rest = gateways[:canary], gateways[canary:]
    if canaries:
        run_wave(canaries)
        if all(results[g].ok for g in canaries):
            out.write(f"canary: watching {', '.join(canaries)} for {canary_wait_s:g} s\n")
            problems = watch_canaries(login, [results[g] for g in canaries], canary_wait_s, asset)
            for gw, problem in problems.items():
                results[gw] = GatewayOutcome(gw, "unhealthy", results[gw].previous, results[gw].version, problem)
                show(results[gw])
            if problems:
                failures += len(problems)
                rest_reason = "canary failed: " + "; ".join(f"{g} {p}" for g, p in problems.items())
            else:
                out.write("canary: healthy; rolling out to the rest\n")
                rest_reason = ""
        else:
            rest_reason = "canary did not install"
        if rest_reason:
            for gw in rest:
                results[gw] = GatewayOutcome(gw, "skipped", reason=rest_reason)
                show(results[gw])
            rest = []
    run_wave(rest)
    for gw in gateways:
        if gw not in results:
            results[gw] = GatewayOutcome(gw, "skipped", reason=f"rollout aborted after {failures} failure(s)")
            show(results[gw])
    ordered = [results[g] for g in gateways]
    n_ok = sum(o.ok for o in ordered)
    counts: dict[str, int] = {}
    for o in ordered:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    out.write(f"installed on {n_ok} of {len(ordered)} gateway(s) ("
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")\n")
    return (0 if n_ok == len(ordered) else 1), ordered
