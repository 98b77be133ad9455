"""Reading and verifying an exported bundle on disk (torch-free).

The contract itself (what ``manifest.json`` holds) is :mod:`edge_aae.core.manifest`.
The manifest lists the sha256 of every model file; the same manifest, minus that
``files`` table (a file cannot hold its own hash), is stored in each ONNX file's
``metadata_props`` under :data:`~edge_aae.core.manifest.METADATA_KEY`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge_aae.core.errors import CorruptModelError, UsageError
from edge_aae.core.manifest import MANIFEST, SIGNATURE, Manifest, is_model_file, sha256_file
from edge_aae.core.streaming import StreamRule


@dataclass(frozen=True)
class Bundle:
    """A bundle whose manifest parsed; ``model_path`` is the model file to run."""

    path: Path
    manifest: Manifest
    model_file: str

    @property
    def model_path(self) -> Path:
        """Absolute path of the selected model file."""
        return self.path / self.model_file

    @property
    def threshold(self) -> float:
        """The threshold calibrated for the selected model file."""
        return self.manifest.threshold(self.model_file)

    @property
    def channels(self) -> list[str]:
        """Channel names in input order."""
        return list(self.manifest.channels)

    @property
    def window_len(self) -> int:
        """Samples per window."""
        return self.manifest.window_len

    @property
    def stride(self) -> int:
        """New samples between scored windows."""
        return self.manifest.stride

    @property
    def stream_rule(self) -> StreamRule:
        """How the model windows a raw series (offline and live alike)."""
        return self.manifest.stream

    @property
    def name(self) -> str:
        """Model name."""
        return self.manifest.model.name

    @property
    def version(self) -> str:
        """Model version (dot-separated integers; larger is newer)."""
        return self.manifest.model.version


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse ``manifest.json`` and check it against the contract.

    Raises:
        UsageError: the directory does not exist.
        CorruptModelError: the manifest is missing, unparsable or incomplete.

    """
    if not bundle_dir.is_dir():
        raise UsageError(f"{bundle_dir}: no such bundle directory")
    path = bundle_dir / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptModelError(f"{path}: missing; not an edge-aae bundle") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(f"{path}: not valid JSON ({exc})") from None
    return Manifest.from_json(raw, str(path))


def check_hashes(bundle_dir: Path, manifest: Manifest) -> list[str]:
    """Problems with the model files against the manifest's hashes (empty list: all good)."""
    problems = []
    for name, info in manifest.files.items():
        if not is_model_file(name) or not isinstance(info, dict):
            # never hash or report on a path the manifest names outside the bundle
            problems.append(f"{bundle_dir / MANIFEST}: files names {str(name)[:60]!r}, not a bundle model file")
            continue
        f = bundle_dir / name
        if not f.is_file():
            problems.append(f"{f}: missing")
            continue
        digest = sha256_file(f)
        if digest != info.get("sha256"):
            problems.append(f"{f}: sha256 {digest[:12]}... does not match the manifest's "
                            f"{str(info.get('sha256'))[:12]}... (file edited or damaged)")
    return problems


def check_signature(bundle_dir: Path, public_key_path: Path) -> list[str]:
    """Problems with ``manifest.sig`` against an Ed25519 public key PEM (empty: valid)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if public_key_path.is_dir():
        public_key_path = public_key_path / "public.pem"
    try:
        key = load_pem_public_key(public_key_path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{public_key_path}: public key not found") from None
    except ValueError as exc:
        raise UsageError(f"{public_key_path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{public_key_path}: not an Ed25519 public key")
    sig_path = bundle_dir / SIGNATURE
    if not sig_path.is_file():
        return [f"{sig_path}: missing (bundle is not signed)"]
    try:
        key.verify(sig_path.read_bytes(), (bundle_dir / MANIFEST).read_bytes())
    except InvalidSignature:
        return [f"{sig_path}: signature does not match manifest.json with key {public_key_path} "
                "(manifest edited, or signed with another key)"]
    return []


def verify_bundle(bundle_dir: Path, public_key_path: Path | None = None) -> list[str]:
    """Every problem found: manifest, file hashes and (with a key) the signature."""
    try:
        manifest = read_manifest(bundle_dir)
    except CorruptModelError as exc:
        return [str(exc)]
    problems = check_hashes(bundle_dir, manifest)
    if public_key_path is not None:
        problems += check_signature(bundle_dir, public_key_path)
    return problems


def open_bundle(bundle_dir: Path, model_file: str | None = None, check: bool = True) -> Bundle:
    """Read a bundle, check its hashes, and select a model file (default: the manifest's default).

    Raises:
        CorruptModelError: any hash mismatch, or an unknown model file.

    """
    manifest = read_manifest(bundle_dir)
    if check:
        problems = check_hashes(bundle_dir, manifest)
        if problems:
            raise CorruptModelError("; ".join(problems))
    chosen = model_file or manifest.default_model
    if chosen not in manifest.models:
        raise CorruptModelError(f"{bundle_dir / MANIFEST}: no model entry {chosen!r} "
                                f"(has {', '.join(manifest.models)})")
    return Bundle(bundle_dir, manifest, chosen)
