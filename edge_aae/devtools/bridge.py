"""A gateway-local mosquitto bridged to a "central" one on loopback, for tests and drills.

The bridge is the shipped ``firmware_configs/mosquitto-bridge.conf``.
"""

from __future__ import annotations

from pathlib import Path

from edge_aae.devtools.mosquitto import Mosquitto
from edge_aae.devtools.mqtt_recorder import Recorder

BRIDGE_CONF = Path(__file__).resolve().parents[2] / "firmware_configs" / "mosquitto-bridge.conf"


def bridged_pair(tmp: Path, gateway: str = "gw1", central_extra: str = "") -> tuple[Mosquitto, Mosquitto]:
    """Start a central broker, then a local one bridged to it; returns ``(central, local)``.

    The shipped config is used as an operator would: ``GATEWAY_ID`` and the address replaced, the
    TLS CA line dropped (loopback, no TLS).
    """
    central = Mosquitto(tmp / "central", extra_conf=central_extra)
    central.start()
    text = BRIDGE_CONF.read_text().replace("GATEWAY_ID", gateway).replace(
        "central.example.com:8883", f"127.0.0.1:{central.port}")
    text = "\n".join(ln for ln in text.splitlines() if not ln.startswith("bridge_cafile"))
    local = Mosquitto(tmp / "local", extra_conf=text + "\n")
    local.start()
    return central, local


def wait_bridge(central: Mosquitto, gateway: str = "gw1", timeout_s: float = 15.0) -> bool:
    """True once the bridge's retained notification on the central broker says connected."""
    rec = Recorder(central.port, f"edge-aae/{gateway}/bridge")
    try:
        return rec.wait_for(lambda r: any(p == b"1" for _t, p, _ in r.messages), timeout_s)
    finally:
        rec.close()
