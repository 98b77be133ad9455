"""The gateway's MQTT client id: stable across restarts, not guessable from its topics.

A broker drops a client when another connects with the same client id, and hands the newcomer
the persistent session: its subscriptions and the readings queued for it. An id derived from the
gateway id alone (which every topic shows) would let anyone on the broker keep the gateway off it
and read its sensor stream. So the default id is ``edge-aae-<gateway_id>-<random>``, the random
part made once and kept in the state folder (``outbox.dir``/``client-id``, mode 0600), so the
session survives restarts. ``broker.client_id`` overrides it (a broker ACL keyed on client ids).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

CLIENT_ID_FILE = "client-id"
_SUFFIX = re.compile(r"-[0-9a-f]{16}\Z")


def session_client_id(state_dir: Path, gateway_id: str) -> str:
    """The client id kept in ``state_dir/client-id``, made on first use (or for a new gateway id).

    A state folder that cannot be written gets a fresh id for this run only, with a warning: the
    gateway still connects, but readings queued while it was away are not delivered after a restart.
    """
    prefix = f"edge-aae-{gateway_id}"
    path = state_dir / CLIENT_ID_FILE
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        kept = ""
    if kept.startswith(prefix) and _SUFFIX.fullmatch(kept[len(prefix):]):
        return kept
    fresh = f"{prefix}-{secrets.token_hex(8)}"
    tmp = path.with_name(f".{CLIENT_ID_FILE}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(fresh + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot keep the MQTT client id in %s (%s): using %s for this run; readings queued while "
                    "the gateway is away will not reach it after a restart", path, exc.strerror or exc, fresh)
    return fresh
