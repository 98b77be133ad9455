"""The over-the-air update wire format: what ``deploy`` sends and the gateway parses (numpy-free).

Wire format on ``ROOT/GW/model/update`` (QoS 1, JSON):

* one **header** ``{"update_id", "kind": "header", "asset", "manifest", "signature", "count",
  "sha256", "chunks"}``: ``manifest`` is base64 of the bundle's exact ``manifest.json`` bytes,
  ``signature`` base64 of its Ed25519 signature (``manifest.sig``), ``count`` the number of
  chunks, ``sha256`` the whole archive's digest and ``chunks`` the digest of every chunk;
* then ``count`` **chunks** ``{"update_id", "kind": "chunk", "index", "data"}``, ``data`` being
  base64 of a slice of a tar archive holding ``manifest.json``, ``manifest.sig`` and the model
  files the manifest lists. ``asset`` is empty for the default model.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_aae.core.errors import EdgeAAEError, UsageError
from edge_aae.core.manifest import MANIFEST, SIGNATURE, is_model_file

MAX_MANIFEST_BYTES = 4_000_000
SIGNATURE_BYTES = 64
MAX_CHUNKS = 100_000
MAX_ASSET_LEN = 200
VERSION_RE = re.compile(r"[0-9]{1,9}(\.[0-9]{1,9}){0,7}")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
UPDATE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
TAR_OVERHEAD = 16 * 1024  # member headers, PAX records, padding and end blocks of a small archive


class UpdateRefused(EdgeAAEError):
    """An update that must not be installed; the message says why (it is published).

    ``signed`` is True when the owner's signature checked out and something after it failed.
    """

    signed = False


def check_version(version: Any) -> tuple[int, ...]:
    """``"2026.11.23.1200"`` -> ``(2026, 11, 23, 1200)``.

    Raises:
        UpdateRefused: not 1 to 8 dot-separated integers of at most 9 digits each.

    """
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise UpdateRefused(f"version {str(version)[:40]!r} is not dot-separated integers (e.g. 2026.11.23.1200)")
    return tuple(int(p) for p in version.split("."))


def version_key(version: str) -> tuple[int, ...]:
    """Ordering key of a version; anything that is not a valid version sorts below every valid one."""
    try:
        return check_version(version)
    except UpdateRefused:
        return (-1,)


def version_dir(version: str) -> str:
    """The folder name of an installed version, derived from its checked integers."""
    return "v" + ".".join(str(p) for p in check_version(version))


def _b64(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 8:
        raise UpdateRefused(f"{what}: expected base64 text of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UpdateRefused(f"{what}: not valid base64") from None


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise UpdateRefused(f"{what}: expected an integer in {lo}..{hi}")
    return value


# ---- sender side ----------------------------------------------------------------------------

def bundle_members(bundle_dir: Path) -> list[str]:
    """The files an update carries: the manifest, its signature, the model files it lists."""
    manifest = json.loads((bundle_dir / MANIFEST).read_text(encoding="utf-8"))
    files = sorted(n for n in manifest.get("files", {}) if is_model_file(n))
    return [MANIFEST, SIGNATURE, *files]


def pack_bundle(bundle_dir: Path) -> bytes:
    """A deterministic tar archive of a bundle's signed files (parity reports and extras stay home)."""
    import tarfile  # the workstation packs; the gateway, which imports this module, never does

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in bundle_members(bundle_dir):
            path = bundle_dir / name
            if path.is_file():
                info = tarfile.TarInfo(name)
                data = path.read_bytes()
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def update_messages(bundle_dir: Path, update_id: str, chunk_bytes: int, asset: str = "") -> list[bytes]:
    """The header and chunk payloads of one update of ``bundle_dir``, in publishing order.

    Raises:
        UsageError: the bundle has no manifest.

    """
    try:
        manifest = (bundle_dir / MANIFEST).read_bytes()
    except OSError as exc:
        raise UsageError(f"{bundle_dir / MANIFEST}: cannot read ({exc.strerror})") from None
    sig_path = bundle_dir / SIGNATURE
    signature = sig_path.read_bytes() if sig_path.is_file() else b""
    return chunk_messages(pack_bundle(bundle_dir), update_id, chunk_bytes, asset, manifest, signature)


def chunk_messages(archive: bytes, update_id: str, chunk_bytes: int, asset: str, manifest: bytes,
                   signature: bytes) -> list[bytes]:
    """Header then chunk payloads for an archive, its manifest bytes and signature."""
    parts = [archive[i:i + chunk_bytes] for i in range(0, len(archive), chunk_bytes)] or [b""]
    header = {"update_id": update_id, "kind": "header", "asset": asset,
              "manifest": base64.b64encode(manifest).decode("ascii"),
              "signature": base64.b64encode(signature).decode("ascii"), "count": len(parts),
              "sha256": hashlib.sha256(archive).hexdigest(),
              "chunks": [hashlib.sha256(p).hexdigest() for p in parts]}
    return [json.dumps(header).encode()] + [
        json.dumps({"update_id": update_id, "kind": "chunk", "index": i,
                    "data": base64.b64encode(p).decode("ascii")}).encode() for i, p in enumerate(parts)]


# ---- gateway side: parsing --------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    """A parsed header; nothing in it is trusted until :func:`verify_header` returned."""

    update_id: str
    asset: str
    manifest_bytes: bytes
    signature: bytes
    count: int
    sha256: str
    chunks: tuple[str, ...]

    @property
    def digest(self) -> str:
        """Identifies the header's content (two headers with one update_id may differ)."""
        h = hashlib.sha256(self.manifest_bytes + self.signature + self.sha256.encode())
        h.update("".join(self.chunks).encode())
        return h.hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A parsed chunk."""

    update_id: str
    index: int
    data: bytes


def parse_update_message(payload: bytes, max_bytes: int) -> Header | Chunk:
    """One message of ``ROOT/GW/model/update``.

    Raises:
        UpdateRefused: malformed (the reason says which field).

    """
    if len(payload) > max_bytes * 4 // 3 + MAX_MANIFEST_BYTES * 2:
        raise UpdateRefused(f"update message of {len(payload)} bytes exceeds the limit")
    try:
        msg = json.loads(payload)
    except (ValueError, RecursionError):
        raise UpdateRefused("update message is not valid JSON") from None
    if not isinstance(msg, dict):
        raise UpdateRefused("update message is not a JSON object")
    uid = msg.get("update_id")
    if not isinstance(uid, str) or not UPDATE_ID_RE.fullmatch(uid):
        raise UpdateRefused("update_id must be 1-64 characters of letters, digits, '-', '_' or '.'")
    kind = msg.get("kind")
    if kind == "chunk":
        index = _int(msg.get("index"), "index", 0, MAX_CHUNKS - 1)
        return Chunk(uid, index, _b64(msg.get("data"), "data", max_bytes))
    if kind != "header":
        raise UpdateRefused("kind must be 'header' or 'chunk' (a sender older than this gateway?)")
    asset = msg.get("asset", "")
    if not isinstance(asset, str) or len(asset) > MAX_ASSET_LEN or any(c in asset for c in "/+#\0"):
        raise UpdateRefused("asset must be an asset name (at most 200 characters, no '/', '+', '#')")
    count = _int(msg.get("count"), "count", 1, MAX_CHUNKS)
    digest, chunks = msg.get("sha256"), msg.get("chunks")
    if not isinstance(digest, str) or not HEX64_RE.fullmatch(digest):
        raise UpdateRefused("sha256 must be 64 lowercase hex digits")
    if (not isinstance(chunks, list) or len(chunks) != count
            or not all(isinstance(c, str) and HEX64_RE.fullmatch(c) for c in chunks)):
        raise UpdateRefused("chunks must list the sha256 of each of the count chunks")
    manifest = _b64(msg.get("manifest"), "manifest", MAX_MANIFEST_BYTES)
    signature = _b64(msg.get("signature"), "signature", SIGNATURE_BYTES)
    return Header(uid, asset, manifest, signature, count, digest, tuple(chunks))
