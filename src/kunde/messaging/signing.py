"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure and shared.

A signed request carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (space-separated ``v1,<base64 HMAC-SHA256>`` entries) over
``"{id}.{timestamp}.{body}"``. Secrets may be given as ``whsec_<base64>`` or raw text.
Messaging signs outbound webhooks with it; fulfilment verifies carrier webhooks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

TOLERANCE_SECONDS = 5 * 60


class SignatureError(Exception):
    """Why a webhook was refused: a stable reason code plus a human sentence."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def secret_bytes(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[6:])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secrets: list[str],
    hdrs: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance: int = TOLERANCE_SECONDS,
) -> tuple[str, int]:
    """Check a request's signature and timestamp; returns (message id, timestamp).

    Any of ``secrets`` may match (rotation). Replay by id is the caller's job:
    it must remember ids for at least the tolerance window.
    """
    msg_id = hdrs.get("webhook-id") or ""
    ts_text = hdrs.get("webhook-timestamp") or ""
    sig_header = hdrs.get("webhook-signature") or ""
    if not msg_id or not ts_text or not sig_header:
        raise SignatureError("missing_headers",
                             "webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        ts = int(ts_text)
    except ValueError as exc:
        raise SignatureError("bad_timestamp", "webhook-timestamp must be Unix seconds") from exc
    if abs(now - ts) > tolerance:
        raise SignatureError("stale_timestamp",
                             f"webhook-timestamp is more than {tolerance} s from now")
    offered = [part.split(",", 1)[1] for part in sig_header.split() if part.startswith("v1,")]
    for secret in secrets:
        expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
        if any(hmac.compare_digest(expected, o) for o in offered):
            return msg_id, ts
    raise SignatureError("bad_signature", "the webhook signature does not match")
