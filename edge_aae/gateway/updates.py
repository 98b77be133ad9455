"""Over-the-air model updates: chunked, signed bundles, staged on disk and swapped atomically.

Wire format on ``ROOT/GW/model/update`` (QoS 1): JSON chunks
``{"update_id", "index", "count", "sha256", "asset", "data"}`` where ``data`` is
base64 of a slice of a tar archive of the bundle and ``sha256`` is the whole
archive's. ``asset`` is empty for the default model.

On disk, under the models directory::

    <version>/            installed bundles (each complete before it gets this name)
    .staging-<id>/        an update being checked (removed at start if a crash left it)
    current.json          {"default": {"version", "previous"}, "assets": {...}}, replaced atomically

Every step that makes an update visible is a rename followed by an fsync of the
folder, so a SIGKILL at any moment leaves either the old or the new model named
in ``current.json``, both complete.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.errors import EdgeAAEError
from edge_aae.gateway.bundle import MANIFEST, SIGNATURE, decode_array, read_manifest, verify_bundle
from edge_aae.gateway.scorer import OnnxScorer

log = logging.getLogger(__name__)

POINTER = "current.json"
BUNDLE_FILES = frozenset({"model.onnx", "model.fp32.onnx", MANIFEST, SIGNATURE, "parity.json"})


class UpdateRefused(EdgeAAEError):
    """An update that must not be installed; the message says why (it is published)."""


def version_key(version: str) -> tuple[int, ...]:
    """``"2026.11.23.1200"`` -> ``(2026, 11, 23, 1200)``; non-numeric parts compare as -1."""
    return tuple(int(p) if p.isdigit() else -1 for p in str(version).split("."))


def pack_bundle(bundle_dir: Path) -> bytes:
    """A deterministic tar archive of a bundle's files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(BUNDLE_FILES):
            path = bundle_dir / name
            if path.is_file():
                info = tarfile.TarInfo(name)
                data = path.read_bytes()
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def chunk_messages(archive: bytes, update_id: str, chunk_bytes: int, asset: str = "") -> list[bytes]:
    """The update as QoS 1 message payloads."""
    digest = hashlib.sha256(archive).hexdigest()
    parts = [archive[i:i + chunk_bytes] for i in range(0, len(archive), chunk_bytes)] or [b""]
    return [json.dumps({"update_id": update_id, "index": i, "count": len(parts), "sha256": digest,
                        "asset": asset, "data": base64.b64encode(p).decode("ascii")}).encode()
            for i, p in enumerate(parts)]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass
class Assembly:
    """Chunks of one update as they arrive (any order, repeats ignored)."""

    update_id: str
    count: int
    sha256: str
    asset: str
    parts: dict[int, bytes] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, index: int, data: bytes) -> bool:
        """Store a chunk; True when all have arrived."""
        self.parts.setdefault(index, data)
        return len(self.parts) == self.count

    def archive(self) -> bytes:
        """The whole archive, checked against its sha256.

        Raises:
            UpdateRefused: the digest does not match.

        """
        data = b"".join(self.parts[i] for i in range(self.count))
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise UpdateRefused("archive sha256 does not match (corrupted in transit or tampered)")
        return data


def parse_chunk(payload: bytes, max_bytes: int) -> tuple[str, int, int, str, str, bytes]:
    """``(update_id, index, count, sha256, asset, data)`` of one chunk message.

    Raises:
        UpdateRefused: malformed chunk.

    """
    try:
        msg = json.loads(payload)
        uid, index, count = str(msg["update_id"]), int(msg["index"]), int(msg["count"])
        digest, asset = str(msg["sha256"]), str(msg.get("asset", ""))
        data = base64.b64decode(msg["data"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise UpdateRefused(f"malformed update chunk ({exc})") from None
    if not uid or len(uid) > 64 or not all(c.isalnum() or c in "-_." for c in uid):
        raise UpdateRefused("update_id must be 1-64 characters of letters, digits, '-', '_' or '.'")
    if not 0 <= index < count or count * len(data) > max_bytes * 2 or count > 100000:
        raise UpdateRefused(f"chunk {index} of {count} is out of range or the update exceeds {max_bytes} bytes")
    return uid, index, count, digest, asset, data


class ModelStore:
    """The models directory: installed versions, staging, and the atomic ``current.json`` pointer."""

    def __init__(self, root: Path) -> None:
        """Create the folder; remove staging left by an interrupted update."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".staging-*"):
            log.warning("removing %s left by an interrupted update", leftover)
            shutil.rmtree(leftover, ignore_errors=True)
        (root / f"{POINTER}.tmp").unlink(missing_ok=True)

    def pointer(self) -> dict[str, Any]:
        """The parsed ``current.json`` (empty when absent or unreadable)."""
        try:
            data = json.loads((self.root / POINTER).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def installed(self, asset: str = "") -> Path | None:
        """The bundle directory currently installed for ``asset`` ('' = default), if it is complete."""
        entry = self._entry(self.pointer(), asset)
        for key in ("version", "previous"):
            v = str(entry.get(key) or "")
            if v and "/" not in v and (self.root / v / MANIFEST).is_file():
                return self.root / v
        return None

    @staticmethod
    def _entry(pointer: dict[str, Any], asset: str) -> dict[str, Any]:
        e = pointer.get("default", {}) if not asset else pointer.get("assets", {}).get(asset, {})
        return e if isinstance(e, dict) else {}

    def stage(self, update_id: str, archive: bytes) -> Path:
        """Extract an archive into a staging folder (only the known bundle files, no paths).

        Raises:
            UpdateRefused: not a tar archive, or unexpected members.

        """
        staging = self.root / f".staging-{update_id}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
                for member in tar.getmembers():
                    if not member.isfile() or member.name not in BUNDLE_FILES:
                        raise UpdateRefused(f"unexpected archive member {member.name[:80]!r}")
                    src = tar.extractfile(member)
                    assert src is not None
                    target = staging / member.name
                    with target.open("wb") as f:
                        shutil.copyfileobj(src, f)
                        f.flush()
                        os.fsync(f.fileno())
        except (tarfile.TarError, EOFError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise UpdateRefused(f"not a bundle archive ({exc})") from None
        except UpdateRefused:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(staging)
        return staging

    def install(self, staging: Path, version: str, asset: str = "") -> Path:
        """Rename staging to its version folder, then point ``current.json`` at it (previous kept)."""
        final = self.root / version
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync_dir(self.root)
        pointer = self.pointer()
        entry = self._entry(pointer, asset)
        new_entry = {"version": version, "previous": entry.get("version")}
        if asset:
            pointer.setdefault("assets", {})[asset] = new_entry
        else:
            pointer["default"] = new_entry
        self._write_pointer(pointer)
        return final

    def rollback(self, asset: str = "") -> str | None:
        """Point back at the previous version; returns it (None if there is none)."""
        pointer = self.pointer()
        entry = self._entry(pointer, asset)
        prev = entry.get("previous")
        if not prev:
            return None
        new_entry = {"version": prev, "previous": None}
        if asset:
            pointer.setdefault("assets", {})[asset] = new_entry
        else:
            pointer["default"] = new_entry
        self._write_pointer(pointer)
        return str(prev)

    def _write_pointer(self, pointer: dict[str, Any]) -> None:
        tmp = self.root / f"{POINTER}.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(pointer, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / POINTER)
        _fsync_dir(self.root)


def check_candidate(staging: Path, public_key: Path, current: OnnxScorer, threads: int) -> OnnxScorer:
    """Every check before an install; returns the new scorer, opened and warmed up.

    Signature and hashes, a newer version, the same channels and window as the running
    model, and the manifest's golden windows reproduced within their tolerance.

    Raises:
        UpdateRefused: the first check that failed, in words.

    """
    problems = verify_bundle(staging, public_key)
    if problems:
        raise UpdateRefused("; ".join(problems).replace(str(staging) + "/", ""))
    manifest = read_manifest(staging)
    new_v, old_v = str(manifest["model"]["version"]), current.bundle.version
    if version_key(new_v) <= version_key(old_v):
        raise UpdateRefused(f"version {new_v} is not newer than the installed {old_v}")
    if list(manifest["channels"]) != list(current.channels) or int(manifest["window_len"]) != current.window_len:
        raise UpdateRefused(f"channels/window {manifest['channels']}/{manifest['window_len']} do not match the "
                            f"running model's {current.channels}/{current.window_len}")
    try:
        scorer = OnnxScorer.open(staging, None, threads)
    except EdgeAAEError as exc:
        raise UpdateRefused(f"cannot load the model: {exc}") from None
    name = scorer.bundle.model_file
    tol = float(manifest.get("golden_tolerance", {}).get(name, 1e-3))
    for k, g in enumerate(manifest.get("golden", [])):
        window = decode_array(g["window"], "golden window")[None]
        score = float(scorer.score_windows(window)[0][0])
        want = float(g["expected"][name]["score"])
        if not np.isfinite(score) or abs(score - want) > tol * max(1.0, abs(want)):
            raise UpdateRefused(f"golden window {k}: score {score:.6g} differs from the expected {want:.6g}")
    return scorer
