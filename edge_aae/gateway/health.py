"""The container health check: whether the daemon's heartbeat is fresh.

The daemon writes ``OUTBOX_DIR/heartbeat`` as ``<unix seconds> <max age in seconds>`` every few
seconds, but only while it is healthy (connected, subscribed, network loop alive, its own probe
coming back through the readings subscription). The file is stale, or missing, otherwise::

    python -m edge_aae.gateway.health /var/lib/edge-aae/state/outbox/heartbeat   # exit 0: healthy
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def heartbeat_age(path: Path, now: float | None = None) -> tuple[bool, str]:
    """``(healthy, why)`` from a heartbeat file."""
    try:
        fields = path.read_text(encoding="ascii").split()
        written, max_age = float(fields[0]), float(fields[1]) if len(fields) > 1 else 60.0
    except FileNotFoundError:
        return False, f"{path}: no heartbeat yet (the daemon has not been healthy since it started)"
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        return False, f"{path}: unreadable heartbeat ({exc})"
    age = (time.time() if now is None else now) - written
    if age > max_age:
        return False, f"{path}: last healthy {age:.0f} s ago (limit {max_age:.0f} s, broker.keepalive_s)"
    return True, f"healthy {age:.0f} s ago"


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when healthy, 1 otherwise, with one line saying why."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "/var/lib/edge-aae/state/outbox/heartbeat")
    ok, why = heartbeat_age(path)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
