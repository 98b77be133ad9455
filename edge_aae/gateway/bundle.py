"""Reading and verifying an exported bundle (torch-free).

A bundle directory holds ``model.onnx`` (the default model for the device),
``model.fp32.onnx``, ``manifest.json`` and, when signed, ``manifest.sig`` (an
Ed25519 signature over the exact bytes of ``manifest.json``). The manifest
lists the sha256 of every model file; the same manifest, minus that ``files``
table (a file cannot hold its own hash), is stored in each ONNX file's
``metadata_props`` under :data:`METADATA_KEY`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_aae.errors import CorruptModelError, UsageError

MANIFEST_SCHEMA_VERSION = 1
METADATA_KEY = "edge_aae_manifest"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
DEFAULT_MODEL = "model.onnx"
FP32_MODEL = "model.fp32.onnx"
MODEL_FILE_RE = re.compile(r"model(\.[a-z0-9]{1,16})?\.onnx")


def is_model_file(name: object) -> bool:
    """Whether a manifest ``files`` key is a plain model file name of a bundle (no paths)."""
    return isinstance(name, str) and MODEL_FILE_RE.fullmatch(name) is not None


REQUIRED_KEYS = ("schema_version", "model", "channels", "window_len", "stride", "sample_period_s",
                 "models", "default_model", "score_direction", "files")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encode_array(a: np.ndarray) -> dict[str, Any]:
    """A float32 array as ``{"dtype", "shape", "b64"}``: exact and far shorter than a JSON list."""
    a32 = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "float32", "shape": list(a32.shape), "b64": base64.b64encode(a32.tobytes()).decode("ascii")}


def decode_array(obj: Any, where: str = "array") -> np.ndarray:
    """Inverse of :func:`encode_array`; also accepts a plain nested list.

    Raises:
        CorruptModelError: the object is not a well-formed encoded array.

    """
    if isinstance(obj, list):
        return np.asarray(obj, dtype=np.float32)
    try:
        raw = base64.b64decode(obj["b64"], validate=True)
        arr = np.frombuffer(raw, dtype="<f4").reshape([int(d) for d in obj["shape"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptModelError(f"{where}: not an encoded float32 array ({exc})") from None
    return arr.astype(np.float32)


@dataclass(frozen=True)
class Bundle:
    """A bundle whose manifest parsed; ``model_path`` is the model file to run."""

    path: Path
    manifest: dict[str, Any]
    model_file: str

    @property
    def model_path(self) -> Path:
        """Absolute path of the selected model file."""
        return self.path / self.model_file

    @property
    def threshold(self) -> float:
        """The threshold calibrated for the selected model file."""
        return float(self.manifest["models"][self.model_file]["threshold"])

    @property
    def channels(self) -> list[str]:
        """Channel names in input order."""
        return list(self.manifest["channels"])

    @property
    def window_len(self) -> int:
        """Samples per window."""
        return int(self.manifest["window_len"])

    @property
    def stride(self) -> int:
        """New samples between scored windows."""
        return int(self.manifest["stride"])

    @property
    def name(self) -> str:
        """Model name."""
        return str(self.manifest["model"]["name"])

    @property
    def version(self) -> str:
        """Model version (dot-separated integers; larger is newer)."""
        return str(self.manifest["model"]["version"])


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Parse ``manifest.json`` and check its required keys.

    Raises:
        UsageError: the directory does not exist.
        CorruptModelError: the manifest is missing, unparsable or incomplete.

    """
    if not bundle_dir.is_dir():
        raise UsageError(f"{bundle_dir}: no such bundle directory")
    path = bundle_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptModelError(f"{path}: missing; not an edge-aae bundle") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise CorruptModelError(f"{path}: not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise CorruptModelError(f"{path}: missing key(s) {', '.join(missing)}")
    if manifest["schema_version"] != MANIFEST_SCHEMA_VERSION:
        raise CorruptModelError(f"{path}: schema_version {manifest['schema_version']!r} is not supported "
                                f"(expects {MANIFEST_SCHEMA_VERSION})")
    return manifest


def check_hashes(bundle_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with the model files against the manifest's hashes (empty list: all good)."""
    problems = []
    files = manifest["files"]
    if not isinstance(files, dict):
        return [f"{bundle_dir / MANIFEST}: files is not a table of file names"]
    for name, info in files.items():
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
    chosen = model_file or str(manifest["default_model"])
    if chosen not in manifest["models"]:
        raise CorruptModelError(f"{bundle_dir / MANIFEST}: no model entry {chosen!r} "
                                f"(has {', '.join(manifest['models'])})")
    return Bundle(bundle_dir, manifest, chosen)
