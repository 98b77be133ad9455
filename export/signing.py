"""Ed25519 keys and bundle signatures (``cryptography``)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_aae.core.errors import UsageError
from edge_aae.core.manifest import MANIFEST, SIGNATURE


def generate_keypair(key_dir: Path) -> tuple[Path, Path]:
    """Write ``private.pem`` (mode 0600) and ``public.pem``; refuse to overwrite a private key."""
    key_dir.mkdir(parents=True, exist_ok=True)
    private_path, public_path = key_dir / "private.pem", key_dir / "public.pem"
    if private_path.exists():
        raise UsageError(f"{private_path}: exists; refusing to overwrite a private key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return private_path, public_path


def load_private_key(key_dir: Path) -> Ed25519PrivateKey:
    """Read ``KEYDIR/private.pem`` (or a PEM file path)."""
    path = key_dir / "private.pem" if key_dir.is_dir() else key_dir
    try:
        mode = path.stat().st_mode
    except OSError:
        mode = 0
    if mode & 0o077:
        raise UsageError(f"{path}: the private key is readable by other users (mode {mode & 0o777:o}); "
                         f"fix with: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise UsageError(f"{path}: private key not found (make one with edge-aae keygen)") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path}: not an Ed25519 private key")
    return key


def sign_bundle(bundle_dir: Path, key: Ed25519PrivateKey) -> Path:
    """Sign the exact bytes of ``manifest.json`` into ``manifest.sig``."""
    sig = key.sign((bundle_dir / MANIFEST).read_bytes())
    out = bundle_dir / SIGNATURE
    out.write_bytes(sig)
    return out
