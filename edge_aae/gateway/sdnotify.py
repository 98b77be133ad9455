"""systemd's notify protocol (``Type=notify``, ``WatchdogSec``) without a dependency.

When systemd starts the daemon it sets ``NOTIFY_SOCKET``; each message is one datagram of
``KEY=VALUE`` lines. Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing. A failed
send is logged once and never raised: the watchdog is a convenience, not a reason to stop.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Send ``READY=1``, ``WATCHDOG=1``, ``STATUS=...`` and ``STOPPING=1`` to systemd."""

    def __init__(self, address: str | None = None) -> None:
        """``address``: the socket path (default: ``$NOTIFY_SOCKET``; ``@name`` is an abstract socket)."""
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        self._failed = False
        if self._addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return self._sock is not None

    def send(self, **fields: str) -> None:
        """One datagram: ``send(READY="1", STATUS="serving")``."""
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(f"{k}={v}" for k, v in fields.items()).encode(), self._addr)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("systemd notify socket %r: %s (further failures are not logged)", self._addr, exc)

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
