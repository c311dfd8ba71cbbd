"""Where export bundles live: sealed files under ``KUNDE_DATA_DIR/exports``, and signed links.

A bundle is sealed (AES-256-GCM) under the customer's data key when one exists, so
shredding the key on erasure makes every copy unreadable even before the file is
deleted; for an unknown customer a key derived from the secret key is used.
Download links carry an expiry and an HMAC of (request id, format, expiry).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from kunde.privacy.vault import Vault

if TYPE_CHECKING:
    from kunde.kernel import Kernel

FORMATS = {"json": "application/json", "html": "text/html; charset=utf-8"}


def bundle_dir(kernel: Kernel) -> Path:
    return kernel.settings.data_path / "exports"


def bundle_path(kernel: Kernel, request_id: str, fmt: str) -> Path:
    if fmt not in FORMATS or not request_id.replace("-", "").isalnum():
        raise ValueError("bad bundle name")
    return bundle_dir(kernel) / f"{request_id}.{fmt}.sealed"


def fallback_key(kernel: Kernel, request_id: str) -> bytes:
    return hmac.new(kernel.settings.secret_key.encode(), b"kunde-export\x00" + request_id.encode(),
                    hashlib.sha256).digest()


def write_bundle(kernel: Kernel, request_id: str, fmt: str, key: bytes, body: bytes) -> int:
    path = bundle_path(kernel, request_id, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    sealed = Vault.seal(key, body, f"{request_id}.{fmt}".encode())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, sealed)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    return len(body)


def read_bundle(kernel: Kernel, request_id: str, fmt: str, key: bytes) -> bytes | None:
    path = bundle_path(kernel, request_id, fmt)
    if not path.exists():
        return None
    try:
        return Vault.open_(key, path.read_bytes(), f"{request_id}.{fmt}".encode())
    except Exception:  # a shredded key or a damaged file reads as gone
        return None


def delete_bundles(kernel: Kernel, request_ids: Iterable[str]) -> None:
    for rid in request_ids:
        for fmt in FORMATS:
            with contextlib.suppress(FileNotFoundError, ValueError):
                bundle_path(kernel, rid, fmt).unlink()


def _link_mac(kernel: Kernel, request_id: str, fmt: str, expires: int) -> str:
    msg = f"export\x1f{request_id}\x1f{fmt}\x1f{expires}".encode()
    return hmac.new(kernel.settings.secret_key.encode(), msg, hashlib.sha256).hexdigest()


def signed_link(kernel: Kernel, request_id: str, fmt: str, expires: int) -> str:
    """A path (relative to the public URL) that downloads the bundle until ``expires``."""
    sig = _link_mac(kernel, request_id, fmt, expires)
    return f"/privacy/exports/{request_id}/{fmt}?expires={expires}&sig={sig}"


def link_is_valid(kernel: Kernel, request_id: str, fmt: str, expires: int, sig: str,
                  now: float) -> bool:
    if fmt not in FORMATS or expires < now:
        return False
    return hmac.compare_digest(_link_mac(kernel, request_id, fmt, expires), sig)
