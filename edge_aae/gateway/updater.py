"""The daemon's updater: verify headers, keep only declared chunks, install in its own thread.

:meth:`Updater.submit` runs in the MQTT callback and is cheap and bounded: a header's
signature is checked before anything is reserved, and a chunk is kept only when its digest
is the one a verified header declared (so an unsigned or conflicting flood holds no memory
and cancels nothing). Complete updates go to one install thread, which unpacks and checks
them in memory, stages only verified bytes, installs and hands the new session to the
worker. Installs are serialized, and "newer" is checked against the newest of the running,
installed (``current.json``) and already-installed-but-not-yet-swapped versions.

Outcomes go to the retained ``ROOT/GW/model`` topic: ``installed``, ``refused`` (with the
reason), ``rolled_back`` (the new model misbehaved in its health window).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_aae.core.errors import EdgeAAEError
from edge_aae.core.update_format import Header, UpdateRefused, parse_update_message, version_key
from edge_aae.gateway.config import GatewayConfig
from edge_aae.gateway.ratelimit import TokenBucket
from edge_aae.gateway.registry import ModelRegistry, ModelSlot
from edge_aae.gateway.scorer import OnnxModel
from edge_aae.gateway.updates import (
    Assembly,
    ModelStore,
    check_candidate,
    load_public_key,
    remove_tree,
    unpack_verified,
    verify_header,
)

log = logging.getLogger(__name__)

MAX_ASSEMBLIES = 16
MAX_PER_MANIFEST = 2  # replays of one signed manifest with other chunk lists
REFUSALS_PER_S = 2.0  # refusal outcomes published per second; the rest are counted and logged


@dataclass
class PendingSwap:
    """A checked, installed model waiting for the worker to switch to it between batches."""

    slot: ModelSlot
    scorer: OnnxModel
    update_id: str
    version: str
    previous_version: str


class Updater:
    """Assembles in the caller's thread (bounded), installs in its own."""

    def __init__(self, cfg: GatewayConfig, registry: ModelRegistry, store: ModelStore,
                 report: Callable[[dict[str, Any]], None]) -> None:
        """Nothing runs until :meth:`start`.

        Raises:
            UsageError: the public key cannot be read.

        """
        self.cfg = cfg
        self.registry = registry
        self.store = store
        self.report = report
        self.public_key = load_public_key(Path(cfg.update.public_key))
        self.swaps: queue.Queue[PendingSwap] = queue.Queue()
        self._complete: queue.Queue[Assembly | None] = queue.Queue()
        self._assemblies: dict[tuple[str, str], Assembly] = {}
        self._lock = threading.Lock()
        self._installed: dict[str, str] = {}  # asset -> version installed by this process
        self._refusals_limit = TokenBucket(REFUSALS_PER_S)
        self.suppressed = 0
        self.chunks_dropped = 0
        self._thread = threading.Thread(target=self._run, name="edge-aae-updater", daemon=True)

    def start(self) -> None:
        """Start the install thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (partial updates are dropped; the sender re-sends a whole update)."""
        self._complete.put(None)
        self._thread.join(timeout=5)

    @property
    def held_bytes(self) -> int:
        """Bytes reserved by updates in progress."""
        with self._lock:
            return sum(a.verified.archive_budget for a in self._assemblies.values())

    # ---- from the MQTT callback -----------------------------------------------------------

    def submit(self, payload: bytes) -> None:
        """Handle one message of the update topic (never raises)."""
        try:
            self._expire()
            msg = parse_update_message(payload, self.cfg.update.max_bytes)
            if isinstance(msg, Header):
                self._header(msg)
            else:
                self._chunk(msg.update_id, msg.index, msg.data)
        except UpdateRefused as exc:
            self._refuse(getattr(exc, "update_id", "?"), "", str(exc))
        except Exception as exc:  # the updater must survive anything a sender can do
            log.exception("update message handling failed")
            self._refuse("?", "", f"internal error: {type(exc).__name__}")

    def _header(self, h: Header) -> None:
        u = self.cfg.update
        with self._lock:
            if (h.update_id, h.digest) in self._assemblies:
                return  # a redelivered header
        slot = self.registry.slot_for_update(h.asset)
        if slot is None:
            self._refuse(h.update_id, h.asset, f"no model configured for asset {h.asset!r}")
            return
        try:
            verified = verify_header(h, self.public_key, u.max_bytes)  # the signature first
            newest = self._newest(slot)
        except UpdateRefused as exc:
            self._refuse(h.update_id, h.asset, str(exc), signed=exc.signed)
            return
        if version_key(verified.version) <= version_key(newest):
            self._refuse(h.update_id, h.asset, f"version {verified.version} is not newer than the installed {newest}",
                         verified.version, signed=True)
            return
        with self._lock:
            same = sum(1 for a in self._assemblies.values() if a.verified.raw == verified.raw)
            held = sum(a.verified.archive_budget for a in self._assemblies.values())
            if same >= MAX_PER_MANIFEST:
                problem = "this signed manifest is already being received"
            elif len(self._assemblies) >= MAX_ASSEMBLIES or held + verified.archive_budget > u.max_bytes:
                problem = (f"too many updates in progress ({len(self._assemblies)}, {held} bytes held; "
                           f"update.max_bytes = {u.max_bytes})")
            else:
                problem = ""
                self._assemblies[(h.update_id, h.digest)] = Assembly(h, verified)
        if problem:
            self._refuse(h.update_id, h.asset, problem, verified.version, signed=True)
        else:
            log.info("update %s: signed manifest for %s %s verified; receiving %d chunk(s)", h.update_id,
                     verified.manifest.get("model", {}).get("name"), verified.version, h.count)

    def _chunk(self, update_id: str, index: int, data: bytes) -> None:
        done: list[Assembly] = []
        with self._lock:
            kept = False
            for key, asm in list(self._assemblies.items()):
                if key[0] == update_id and asm.add(index, data):
                    kept = True
                    if asm.complete:
                        del self._assemblies[key]
                        done.append(asm)
            if not kept:
                self.chunks_dropped += 1
        if not kept and self.chunks_dropped % 100 == 1:
            log.warning("update chunk %d of %s matches no verified update; dropped (%d so far)", index,
                        update_id[:64], self.chunks_dropped)
        for asm in done:
            self._complete.put(asm)

    def _expire(self) -> None:
        timeout = self.cfg.update.chunk_timeout_s
        now = time.monotonic()
        with self._lock:
            old = [k for k, a in self._assemblies.items() if now - a.started > timeout]
            expired = [self._assemblies.pop(k) for k in old]
        for a in expired:
            self._refuse(a.header.update_id, a.header.asset, f"incomplete after {timeout:.0f} s", a.verified.version,
                         signed=True)

    def _refuse(self, update_id: str, asset: str, reason: str, version: str = "", signed: bool = False) -> None:
        """Report a refusal; those of unverified messages are rate-limited (a flood must not flood back)."""
        publish = signed or self._refusals_limit.take()
        if not publish:
            with self._lock:
                self.suppressed += 1
            log.debug("update %s refused (not published, rate limit): %s", update_id, reason)
            return
        log.warning("update %s refused: %s", update_id, reason)
        self.report({"event": "refused", "update_id": update_id, "asset": asset, "version": version,
                     "reason": reason})

    def _newest(self, slot: ModelSlot) -> str:
        """The newest of the running, installed and installed-but-not-yet-swapped versions."""
        candidates = [slot.scorer.bundle.version, self.store.installed_version(slot.asset) or "",
                      self._installed.get(slot.asset, "")]
        return max(candidates, key=version_key)

    # ---- the install thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            asm = self._complete.get()
            if asm is None:
                return
            try:
                self._install(asm)
            except Exception as exc:  # the updater must survive anything a sender can do
                log.exception("update install failed")
                self._refuse(asm.header.update_id, asm.header.asset, f"internal error: {type(exc).__name__}",
                             asm.verified.version, signed=True)

    def _install(self, asm: Assembly) -> None:
        h, v = asm.header, asm.verified
        slot = self.registry.slot_for_update(h.asset)
        if slot is None:
            self._refuse(h.update_id, h.asset, f"no model configured for asset {h.asset!r}")
            return
        u = self.cfg.update
        staging: Path | None = None
        try:
            newest = self._newest(slot)  # again: another update may have installed meanwhile
            if version_key(v.version) <= version_key(newest):
                raise UpdateRefused(f"version {v.version} is not newer than the installed {newest}")
            files = unpack_verified(asm.archive(), v)
            staging = self.store.stage(h.update_id, files)
            scorer = check_candidate(staging, slot.scorer, self.cfg.runtime.threads,
                                     max_slowdown=u.max_slowdown, max_model_mb=u.max_model_mb)
        except (UpdateRefused, EdgeAAEError, KeyError, TypeError, ValueError) as exc:
            if staging is not None:
                remove_tree(staging, ignore_errors=True)
            self._refuse(h.update_id, h.asset, str(exc) if isinstance(exc, EdgeAAEError)
                         else f"bundle unusable ({type(exc).__name__}: {str(exc)[:100]})", v.version, signed=True)
            return
        previous = max(slot.scorer.bundle.version, self._installed.get(slot.asset, ""), key=version_key)
        final = self.store.install(staging, v.version, h.asset)
        self._installed[slot.asset] = v.version
        scorer = OnnxModel.open(final, None, self.cfg.runtime.threads)  # the installed path, not staging
        log.info("update %s: %s %s installed at %s; switching", h.update_id, scorer.bundle.name, v.version, final)
        self.swaps.put(PendingSwap(slot, scorer, h.update_id, v.version, previous))
