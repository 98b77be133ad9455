"""The daemon's broker connection: Nagle's algorithm off, so scores and PUBACKs leave at once."""

from __future__ import annotations

import socket

from edge_aae.devtools.daemon_process import write_config
from edge_aae.gateway.config import load_gateway_config
from edge_aae.gateway.daemon import Daemon


def test_the_broker_connection_has_tcp_nodelay(tmp_path, bundle, broker):
    cfg = write_config(tmp_path / "gw.toml", bundle, tmp_path / "outbox")
    d = Daemon(load_gateway_config(cfg, {"broker_url": broker.url}))
    d.transport.start()
    try:
        assert d.transport.connected.wait(20), "no connection to the test broker"
        sock = d.transport.client.socket()
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        d.transport.close()
    # the test broker itself runs as firmware_configs/mosquitto-bridge.conf sets a gateway's up
    assert "set_tcp_nodelay true" in broker.conf.read_text()
