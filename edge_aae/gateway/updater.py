"""The daemon's update thread: assemble chunks, check, stage, install; the worker swaps sessions.

Outcomes go to the retained ``ROOT/GW/model`` topic: ``installed``, ``refused`` (with the
reason), ``rolled_back`` (the new model misbehaved in its health window).
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_aae.gateway.config import GatewayConfig
from edge_aae.gateway.registry import ModelRegistry, ModelSlot
from edge_aae.gateway.scorer import OnnxScorer
from edge_aae.gateway.updates import Assembly, ModelStore, UpdateRefused, check_candidate, parse_chunk

log = logging.getLogger(__name__)


@dataclass
class PendingSwap:
    """A checked, installed model waiting for the worker to switch to it between batches."""

    slot: ModelSlot
    scorer: OnnxScorer
    update_id: str
    version: str
    previous_version: str


class Updater:
    """Runs in its own thread so a large update never stalls scoring."""

    def __init__(self, cfg: GatewayConfig, registry: ModelRegistry, store: ModelStore,
                 report: Callable[[dict[str, Any]], None]) -> None:
        """Nothing runs until :meth:`start`."""
        self.cfg = cfg
        self.registry = registry
        self.store = store
        self.report = report
        self.swaps: queue.Queue[PendingSwap] = queue.Queue()
        self._inbox: queue.Queue[bytes | None] = queue.Queue(maxsize=10000)
        self._assemblies: dict[str, Assembly] = {}
        self._thread = threading.Thread(target=self._run, name="edge-aae-updater", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (pending chunks are dropped; the sender re-sends a whole update)."""
        self._inbox.put(None)
        self._thread.join(timeout=5)

    def submit(self, payload: bytes) -> None:
        """From the MQTT callback: queue a chunk (dropped with a log line when the inbox is full)."""
        try:
            self._inbox.put_nowait(payload)
        except queue.Full:
            log.warning("update inbox full; chunk dropped")

    def _run(self) -> None:
        while True:
            payload = self._inbox.get()
            if payload is None:
                return
            try:
                self._handle(payload)
            except Exception:  # the updater must survive anything a sender can do
                log.exception("update handling failed")

    def _refuse(self, update_id: str, asset: str, reason: str, version: str = "") -> None:
        log.warning("update %s refused: %s", update_id, reason)
        self.report({"event": "refused", "update_id": update_id, "asset": asset, "version": version,
                     "reason": reason})

    def _handle(self, payload: bytes) -> None:
        u = self.cfg.update
        now = time.monotonic()
        for uid in [k for k, a in self._assemblies.items() if now - a.started > u.chunk_timeout_s]:
            self._refuse(uid, self._assemblies.pop(uid).asset, f"incomplete after {u.chunk_timeout_s:.0f} s")
        try:
            uid, index, count, digest, asset, data = parse_chunk(payload, u.max_bytes)
        except UpdateRefused as exc:
            self._refuse("?", "", str(exc))
            return
        asm = self._assemblies.get(uid)
        if asm is None:
            if len(self._assemblies) >= 4:
                self._refuse(uid, asset, "too many updates in progress")
                return
            asm = self._assemblies[uid] = Assembly(uid, count, digest, asset)
        if (count, digest, asset) != (asm.count, asm.sha256, asm.asset):
            self._assemblies.pop(uid, None)
            self._refuse(uid, asset, "chunks disagree on count, digest or asset")
            return
        if not asm.add(index, data):
            return
        del self._assemblies[uid]
        self._install(asm)

    def _install(self, asm: Assembly) -> None:
        slot = self.registry.slot_for_update(asm.asset)
        if slot is None:
            self._refuse(asm.update_id, asm.asset, f"no model configured for asset {asm.asset!r}")
            return
        staging: Path | None = None
        try:
            archive = asm.archive()
            staging = self.store.stage(asm.update_id, archive)
            scorer = check_candidate(staging, Path(self.cfg.update.public_key), slot.scorer,
                                     self.cfg.runtime.threads)
        except UpdateRefused as exc:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            self._refuse(asm.update_id, asm.asset, str(exc))
            return
        version = scorer.bundle.version
        final = self.store.install(staging, version, asm.asset)
        scorer = OnnxScorer.open(final, None, self.cfg.runtime.threads)  # the installed path, not staging
        log.info("update %s: %s %s installed at %s; switching", asm.update_id, scorer.bundle.name, version, final)
        self.swaps.put(PendingSwap(slot, scorer, asm.update_id, version, slot.scorer.bundle.version))
