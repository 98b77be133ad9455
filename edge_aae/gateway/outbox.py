"""A durable on-disk outbox for QoS 1 messages (alerts): a message leaves it only on PUBACK.

Each message is one file ``<seq>.msg`` written atomically (temporary file,
fsync, ``os.replace``, fsync of the folder), holding the topic, QoS, retain flag
and payload. Files left by a previous run are sent again at start, so an alert
survives both a broker restart and a daemon restart; a subscriber may then see
it twice and drops the copy by its ``id``.

When the disk refuses a write (full, read-only, quota), the message is kept in
memory instead (bounded by the same ``max_messages``) and still sent: an alert
is never lost to a full disk while the daemon runs. Every such failure and every
message dropped at the bound is passed to ``report(reason, detail)``
(``outbox_error``, ``outbox_full``) so the daemon can count and publish it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxMessage:
    """One stored message."""

    key: str
    topic: str
    payload: bytes
    qos: int
    retain: bool


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


class Outbox:
    """Thread-safe; bounded to ``max_messages`` (the oldest is dropped and counted beyond it)."""

    def __init__(self, directory: Path, max_messages: int,
                 report: Callable[[str, str], None] | None = None) -> None:
        """Create the folder if needed and pick up messages a previous run left."""
        self.dir = directory
        self.max_messages = max_messages
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._report = report or (lambda _reason, _detail: None)
        self._memory: dict[str, OutboxMessage] = {}  # messages the disk refused
        self.dropped = 0
        self.write_errors = 0
        existing = sorted(self.dir.glob("*.msg"))
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # a write cut off by a crash; its message never counted
        self._keys = [p.stem for p in existing]
        self._seq = int(self._keys[-1]) + 1 if self._keys else 0
        if self._keys:
            log.info("outbox %s: %d message(s) from a previous run to send", self.dir, len(self._keys))

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> str:
        """Store a message durably; returns its key."""
        record = json.dumps({"topic": topic, "qos": qos, "retain": retain,
                             "payload": payload.decode("utf-8")}).encode("utf-8")
        problems: list[tuple[str, str]] = []
        with self._lock:
            key = f"{self._seq:012d}"
            self._seq += 1
            try:
                self._write(key, record)
            except OSError as exc:
                try:
                    (self.dir / f"{key}.tmp").unlink(missing_ok=True)
                except OSError:
                    pass  # the disk that refused the write may refuse this too; a restart removes it
                self.write_errors += 1
                self._memory[key] = OutboxMessage(key, topic, payload, qos, retain)
                problems.append(("outbox_error", f"cannot write {self.dir} ({exc.strerror or exc}); message {key} "
                                 "held in memory until the broker acknowledges it"))
            self._keys.append(key)
            while len(self._keys) > self.max_messages:
                old = self._keys.pop(0)
                if self._memory.pop(old, None) is None:
                    try:
                        (self.dir / f"{old}.msg").unlink(missing_ok=True)
                    except OSError:
                        pass
                self.dropped += 1
                problems.append(("outbox_full", f"outbox full ({self.max_messages} messages): dropped the oldest, "
                                 f"{old}"))
        for reason, detail in problems:
            log.warning("%s", detail)
            self._report(reason, detail)
        return key

    def _write(self, key: str, record: bytes) -> None:
        tmp = self.dir / f"{key}.tmp"
        with tmp.open("wb") as f:
            f.write(record)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / f"{key}.msg")
        _fsync_dir(self.dir)

    def keys(self) -> list[str]:
        """Keys of the messages not yet acknowledged, oldest first."""
        with self._lock:
            return list(self._keys)

    def get(self, key: str) -> OutboxMessage | None:
        """Read one message (None if gone; an unreadable file is dropped and logged)."""
        with self._lock:
            held = self._memory.get(key)
        if held is not None:
            return held
        path = self.dir / f"{key}.msg"
        try:
            rec = json.loads(path.read_bytes())
            return OutboxMessage(key, rec["topic"], rec["payload"].encode("utf-8"), int(rec["qos"]),
                                 bool(rec["retain"]))
        except FileNotFoundError:
            self.ack(key)
            return None
        except OSError as exc:  # an I/O error now; the file may read next time
            log.error("outbox %s: cannot read (%s); retrying later", path, exc.strerror or exc)
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("outbox %s: unreadable, dropped (%s)", path, exc)
            self.ack(key)
            return None

    def pending(self) -> list[OutboxMessage]:
        """Messages not yet acknowledged, oldest first."""
        return [m for m in (self.get(k) for k in self.keys()) if m is not None]

    def ack(self, key: str) -> None:
        """The broker acknowledged ``key``: remove it."""
        with self._lock:
            if key in self._keys:
                self._keys.remove(key)
            held = self._memory.pop(key, None)
        if held is None:
            try:
                (self.dir / f"{key}.msg").unlink(missing_ok=True)
            except OSError as exc:
                log.error("outbox: cannot remove %s.msg (%s); it may be sent again after a restart", key, exc)

    def __len__(self) -> int:
        """Messages waiting for an acknowledgement."""
        with self._lock:
            return len(self._keys)
