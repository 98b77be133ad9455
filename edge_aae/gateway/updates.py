"""Over-the-air model updates: a signed header, then chunks; verified in memory, then staged and swapped.

The wire format (header, chunks, versions) is :mod:`edge_aae.core.update_format`.

Order of checks on the gateway, so that nobody without the owner's key can make it write,
hash or hold anything:

1. the header's signature over the manifest bytes, **first**; then the manifest itself
   (a version of dot-separated integers, known file names, declared sizes within
   ``update.max_bytes``) and a version newer than the one installed;
2. only then is memory reserved for the chunks (all updates together within
   ``update.max_bytes``); a chunk is kept only if its digest is the one the header declared
   at its index, so an unsigned or conflicting flood holds nothing and cancels nothing;
3. the complete archive is read in memory: only regular, non-sparse members named by the
   signed manifest, each of exactly its declared size and sha256; only these bytes are
   written, into a staging folder inside the models directory.

On disk, under the models directory::

    v<version>/           installed bundles (each complete before it gets this name)
    .staging-<id>/        an update being checked (removed at start if a crash left it)
    current.json          {"default": {"version", "previous"}, "assets": {...}}, replaced atomically

Folder names are derived from the checked version, never taken from a message. Every step
that makes an update visible is a rename followed by an fsync of the folder, so a SIGKILL at
any moment leaves either the old or the new model named in ``current.json``, both complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_aae.core.errors import EdgeAAEError, UsageError
from edge_aae.core.manifest import (
    MANIFEST,
    MANIFEST_SCHEMA_VERSION,
    REQUIRED_KEYS,
    SIGNATURE,
    decode_array,
    is_model_file,
)
from edge_aae.core.update_format import (
    HEX64_RE,
    SIGNATURE_BYTES,
    TAR_OVERHEAD,
    UPDATE_ID_RE,
    Header,
    UpdateRefused,
    check_version,
    version_dir,
    version_key,
)
from edge_aae.gateway.scorer import OnnxModel
from edge_aae.gateway.stats import rss_mb

log = logging.getLogger(__name__)

POINTER = "current.json"
# ---- gateway side: verification ---------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedManifest:
    """A manifest whose signature checked out, with the facts the gateway relies on."""

    raw: bytes
    signature: bytes
    manifest: dict[str, Any]
    version: str
    files: dict[str, tuple[str, int]]  # name -> (sha256, bytes)

    @property
    def archive_budget(self) -> int:
        """The most bytes an honest archive of these files can take."""
        return len(self.raw) + SIGNATURE_BYTES + sum(n for _, n in self.files.values()) + TAR_OVERHEAD


def load_public_key(path: Path) -> Any:
    """An Ed25519 public key from a PEM file (or ``DIR/public.pem``).

    Raises:
        UsageError: missing, unreadable or not Ed25519.

    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if path.is_dir():
        path = path / "public.pem"
    try:
        key = load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the public key ({exc.strerror})") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path}: not an Ed25519 public key")
    return key


def verify_header(header: Header, public_key: Any, max_bytes: int) -> VerifiedManifest:
    """Check the signature over the manifest bytes, then the manifest. Nothing else is read before.

    Raises:
        UpdateRefused: unsigned, a bad signature, or a manifest the gateway cannot accept.

    """
    from cryptography.exceptions import InvalidSignature

    if not header.signature:
        raise UpdateRefused("manifest.sig missing: the bundle is not signed (export it with --sign)")
    try:
        public_key.verify(header.signature, header.manifest_bytes)
    except InvalidSignature:
        raise UpdateRefused("signature does not match manifest.json (manifest edited, or signed with "
                            "another key)") from None
    try:
        return _check_manifest(header, max_bytes)
    except UpdateRefused as exc:
        exc.signed = True
        raise


def _check_manifest(header: Header, max_bytes: int) -> VerifiedManifest:
    try:
        manifest = json.loads(header.manifest_bytes)
    except (ValueError, RecursionError):
        raise UpdateRefused("manifest.json is signed but not valid JSON") from None
    if not isinstance(manifest, dict) or any(k not in manifest for k in REQUIRED_KEYS):
        raise UpdateRefused("manifest.json lacks required keys")
    if manifest["schema_version"] != MANIFEST_SCHEMA_VERSION:
        raise UpdateRefused(f"manifest schema_version {str(manifest['schema_version'])[:20]} is not supported")
    model = manifest.get("model")
    version = model.get("version") if isinstance(model, dict) else None
    check_version(version)
    assert isinstance(version, str)
    files_in = manifest["files"]
    if not isinstance(files_in, dict) or not files_in:
        raise UpdateRefused("manifest files must name the model files")
    files: dict[str, tuple[str, int]] = {}
    for name, info in files_in.items():
        if not is_model_file(name):
            raise UpdateRefused(f"manifest names an unexpected file {str(name)[:60]!r} (only model*.onnx)")
        if (not isinstance(info, dict) or not isinstance(info.get("sha256"), str)
                or not HEX64_RE.fullmatch(info["sha256"])):
            raise UpdateRefused(f"manifest files.{name}: needs a sha256")
        size = info.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= max_bytes:
            raise UpdateRefused(f"manifest files.{name}: needs its size in bytes (at most update.max_bytes "
                                f"= {max_bytes})")
        files[name] = (info["sha256"], size)
    if manifest.get("default_model") not in files:
        raise UpdateRefused("manifest default_model is not one of its files")
    verified = VerifiedManifest(header.manifest_bytes, header.signature, manifest, version, files)
    if verified.archive_budget > max_bytes:
        raise UpdateRefused(f"the bundle's {verified.archive_budget} bytes exceed update.max_bytes = {max_bytes}")
    return verified


def unpack_verified(archive: bytes, verified: VerifiedManifest) -> dict[str, bytes]:
    """The bundle's files from an archive in memory, each checked against the signed manifest.

    Only regular, non-sparse members named by the manifest (plus the manifest and its
    signature, byte-identical to the verified ones), each of exactly its declared size and
    digest; anything else refuses the whole update. Nothing is written to disk here.

    Raises:
        UpdateRefused: what was wrong, in words.

    """
    import tarfile  # only when an update arrives: a gateway that never gets one never loads it

    limits = {MANIFEST: len(verified.raw), SIGNATURE: SIGNATURE_BYTES} | {n: s for n, (_, s) in verified.files.items()}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for member in tar:
                name = member.name
                if name not in limits or name in out:
                    raise UpdateRefused(f"unexpected archive member {name[:80]!r}")
                if not member.isreg() or member.issparse():
                    raise UpdateRefused(f"archive member {name!r} is not a plain file")
                if member.size != limits[name]:
                    raise UpdateRefused(f"archive member {name!r} is {member.size} bytes, the signed manifest "
                                        f"says {limits[name]}")
                src = tar.extractfile(member)
                data = src.read(limits[name] + 1) if src is not None else b""
                if len(data) != limits[name]:
                    raise UpdateRefused(f"archive member {name!r} is truncated")
                out[name] = data
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise UpdateRefused(f"not a bundle archive ({str(exc)[:100]})") from None
    if out.get(MANIFEST) != verified.raw or out.get(SIGNATURE) != verified.signature:
        raise UpdateRefused("the archive's manifest or signature is not the one the header carried")
    for name, (digest, _) in verified.files.items():
        if name not in out:
            raise UpdateRefused(f"{name}: missing from the archive")
        if hashlib.sha256(out[name]).hexdigest() != digest:
            raise UpdateRefused(f"{name}: sha256 does not match the signed manifest (corrupted or tampered)")
    return out


@dataclass
class Assembly:
    """Chunks of one verified update as they arrive (any order; only the declared digests are kept)."""

    header: Header
    verified: VerifiedManifest
    parts: dict[int, bytes] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    held: int = 0

    def add(self, index: int, data: bytes) -> bool:
        """Keep the chunk if it is the one declared at ``index`` (and fits); True if it was kept."""
        if (index >= self.header.count or index in self.parts
                or self.held + len(data) > self.verified.archive_budget
                or hashlib.sha256(data).hexdigest() != self.header.chunks[index]):
            return False
        self.parts[index] = data
        self.held += len(data)
        return True

    @property
    def complete(self) -> bool:
        """Whether every chunk has arrived."""
        return len(self.parts) == self.header.count

    def archive(self) -> bytes:
        """The whole archive, checked against the header's digest.

        Raises:
            UpdateRefused: the digest does not match.

        """
        data = b"".join(self.parts[i] for i in range(self.header.count))
        if hashlib.sha256(data).hexdigest() != self.header.sha256:
            raise UpdateRefused("archive sha256 does not match the header")
        return data


# ---- the models directory ---------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ModelStore:
    """The models directory: installed versions, staging, and the atomic ``current.json`` pointer."""

    def __init__(self, root: Path) -> None:
        """Create the folder; remove staging left by an interrupted update."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for leftover in root.glob(".staging-*"):
            log.warning("removing %s left by an interrupted update", leftover)
            remove_tree(leftover, ignore_errors=True)
        (root / f"{POINTER}.tmp").unlink(missing_ok=True)

    def pointer(self) -> dict[str, Any]:
        """The parsed ``current.json`` (empty when absent or unreadable)."""
        try:
            data = json.loads((self.root / POINTER).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def folder(self, version: str) -> Path | None:
        """The installed folder of ``version`` if complete (also the pre-``v`` layout of older gateways)."""
        try:
            derived = version_dir(version)
        except UpdateRefused:
            return None
        for name in (derived, version):
            if (self.root / name / MANIFEST).is_file():
                return self.root / name
        return None

    def installed(self, asset: str = "") -> Path | None:
        """The bundle directory currently installed for ``asset`` ('' = default), if it is complete."""
        found = self.candidates(asset)
        return found[0] if found else None

    def candidates(self, asset: str = "") -> list[Path]:
        """The installed and the previous bundle directory of ``asset``, those complete, in that order."""
        entry = self._entry(self.pointer(), asset)
        out: list[Path] = []
        for key in ("version", "previous"):
            found = self.folder(str(entry.get(key) or ""))
            if found is not None and found not in out:
                out.append(found)
        return out

    def installed_version(self, asset: str = "") -> str | None:
        """The version ``current.json`` names for ``asset`` (None when none or not a valid version)."""
        v = self._entry(self.pointer(), asset).get("version")
        return v if isinstance(v, str) and version_key(v) != (-1,) else None

    def previous(self, asset: str = "") -> Path | None:
        """The folder of the version before the current one, if it is still complete."""
        return self.folder(str(self._entry(self.pointer(), asset).get("previous") or ""))

    @staticmethod
    def _entry(pointer: dict[str, Any], asset: str) -> dict[str, Any]:
        assets = pointer.get("assets", {})
        e = pointer.get("default", {}) if not asset else (assets.get(asset, {}) if isinstance(assets, dict) else {})
        return e if isinstance(e, dict) else {}

    def stage(self, update_id: str, files: dict[str, bytes]) -> Path:
        """Write verified files (from :func:`unpack_verified`) into a fresh staging folder."""
        if not UPDATE_ID_RE.fullmatch(update_id) or any(not is_model_file(n) and n not in (MANIFEST, SIGNATURE)
                                                         for n in files):
            raise UpdateRefused("refusing to stage unverified names")
        staging = self.root / f".staging-{update_id}"
        remove_tree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for name, data in files.items():
                with (staging / name).open("wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            remove_tree(staging, ignore_errors=True)
            raise UpdateRefused(f"cannot write the update to {self.root} ({exc.strerror})") from None
        _fsync_dir(staging)
        return staging

    def install(self, staging: Path, version: str, asset: str = "") -> Path:
        """Rename staging to its version folder, then point ``current.json`` at it (previous kept)."""
        final = self.root / version_dir(version)
        if final.parent != self.root or staging.parent != self.root:
            raise UpdateRefused("refusing to install outside the models directory")
        if final.exists():
            remove_tree(final)
        os.replace(staging, final)
        _fsync_dir(self.root)
        pointer = self.pointer()
        entry = self._entry(pointer, asset)
        new_entry = {"version": version, "previous": entry.get("version")}
        if asset:
            assets = pointer.get("assets")
            pointer["assets"] = assets = assets if isinstance(assets, dict) else {}
            assets[asset] = new_entry
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
            assets = pointer.get("assets")
            pointer["assets"] = assets = assets if isinstance(assets, dict) else {}
            assets[asset] = new_entry
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


class _Scores(Protocol):
    def score_windows(self, windows: np.ndarray) -> Any: ...


def time_alternately_ms(current: _Scores, candidate: _Scores, windows: np.ndarray,
                        rounds: int = 5) -> tuple[float, float]:
    """Median milliseconds per window of each model, timed in turn round by round.

    Timing one model after the other lets a burst of load on the host (another process starting
    up, a neighbour's install) land on one of them only; in turn, it lands on both alike.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for scorer, out in ((current, times[0]), (candidate, times[1])):
            t0 = time.perf_counter()
            scorer.score_windows(windows)
            out.append((time.perf_counter() - t0) * 1e3 / len(windows))
    return float(np.median(times[0])), float(np.median(times[1]))


SLOWDOWN_SLACK_MS = 0.2  # per window, for timer noise: the speed checks' absolute allowance


def over_slowdown(new_ms: float, old_ms: float, max_slowdown: float) -> bool:
    """Whether ``new_ms`` per window is over ``max_slowdown`` times ``old_ms`` plus the slack."""
    return new_ms > max_slowdown * old_ms + SLOWDOWN_SLACK_MS


def check_speed(current: _Scores, candidate: _Scores, windows: np.ndarray, max_slowdown: float) -> None:
    """Refuse a candidate over ``max_slowdown`` times slower than the running model (:func:`over_slowdown`).

    A first verdict of "too slow" is measured again with three times the rounds before it stands,
    so a host busy for a moment does not refuse a sound model.

    Raises:
        UpdateRefused: slower than the limit in both measurements.

    """
    for rounds in (5, 15):
        old_ms, new_ms = time_alternately_ms(current, candidate, windows, rounds)
        if not over_slowdown(new_ms, old_ms, max_slowdown):
            return
        log.info("candidate timed %.3f ms per window against %.3f over %d rounds", new_ms, old_ms, rounds)
    raise UpdateRefused(f"the model takes {new_ms:.3f} ms per window, {new_ms / max(old_ms, 1e-9):.0f}x the "
                        f"running model's {old_ms:.3f} ms (limit update.max_slowdown = {max_slowdown:g})")


def check_candidate(staging: Path, current: OnnxModel, threads: int, *, max_slowdown: float = 5.0,
                    max_model_mb: float = 512.0) -> OnnxModel:
    """Every check of a verified, staged bundle before it is installed; returns it opened and warmed up.

    The same channels and window as the running model, the manifest's golden windows reproduced
    within their tolerance, inference at most ``max_slowdown`` times slower than the running
    model's on the same windows (plus ``SLOWDOWN_SLACK_MS`` for timer noise), and opening it grows memory by at most
    ``max_model_mb``.

    Raises:
        UpdateRefused: the first check that failed, in words.

    """
    manifest = json.loads((staging / MANIFEST).read_bytes())
    channels, window_len = manifest.get("channels"), manifest.get("window_len")
    if channels != list(current.channels) or window_len != current.window_len:
        raise UpdateRefused(f"channels/window {str(channels)[:200]}/{window_len} do not match the "
                            f"running model's {current.channels}/{current.window_len}")
    rss0 = rss_mb()
    try:
        scorer = OnnxModel.open(staging, None, threads)
    except EdgeAAEError as exc:
        raise UpdateRefused(f"cannot load the model: {exc}") from None
    grown = rss_mb() - rss0
    if grown > max_model_mb:
        raise UpdateRefused(f"opening the model took {grown:.0f} MB of memory (limit update.max_model_mb = "
                            f"{max_model_mb:.0f})")
    name = scorer.bundle.model_file
    tol = float(manifest.get("golden_tolerance", {}).get(name, 1e-3))
    goldens = []
    for k, g in enumerate(manifest.get("golden", [])):
        window = decode_array(g["window"], "golden window")[None]
        goldens.append(window)
        score = float(scorer.score_windows(window)[0][0])
        want = float(g["expected"][name]["score"])
        if not np.isfinite(score) or abs(score - want) > tol * max(1.0, abs(want)):
            raise UpdateRefused(f"golden window {k}: score {score:.6g} differs from the expected {want:.6g}")
    probe = (np.concatenate(goldens) if goldens
             else np.zeros((4, current.window_len, len(current.channels)), np.float32))
    check_speed(current, scorer, probe, max_slowdown)
    return scorer


def remove_tree(path: Path, ignore_errors: bool = False) -> None:
    """``shutil.rmtree``, imported here: ``shutil`` brings ``bz2`` and ``lzma`` (0.3 MB) that only an update needs."""
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)
