"""The Segment Spec message: parsing, validation and normalisation. Pure (no I/O).

`parse_body` turns request bytes into plain objects with every refusal a stable
`IngestError`; `normalise` turns one raw Spec message into the payload of an
``ingest.<type>`` event. A malformed event rejects its whole batch, naming the index
and the field.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from datetime import UTC, datetime
from typing import Any

import msgspec

from kunde.ingest.errors import (
    BadEncoding,
    InvalidEvent,
    InvalidJson,
    InvalidUtf8,
    MissingIdentity,
    TooDeep,
    TooLarge,
)

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_DEPTH = 16
MAX_ID_LENGTH = 256
TYPES = ("track", "identify", "page", "screen", "group", "alias")
CHANNELS = ("web", "app", "store", "service", "email", "server", "other")
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo Content-Encoding (gzip/deflate), never inflating past the batch limit."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise BadEncoding(f"Content-Encoding {enc!r} is not supported; use gzip or none")
    wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(body, MAX_BATCH_BYTES + 1)
    except zlib.error as exc:
        raise InvalidJson(f"the body is not valid {enc}: {exc}",
                          code="ingest.invalid_encoding") from exc
    if len(out) > MAX_BATCH_BYTES or inflater.unconsumed_tail:
        raise TooLarge(f"the decompressed body exceeds {MAX_BATCH_BYTES} bytes",
                       code="ingest.batch_too_large", limit=MAX_BATCH_BYTES)
    return out


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data)


def parse_body(body: bytes, *, limit: int) -> dict[str, Any]:
    """Decode a JSON object body within ``limit`` bytes; every failure is a 4xx."""
    if len(body) > limit:
        code = "ingest.batch_too_large" if limit == MAX_BATCH_BYTES else "ingest.event_too_large"
        raise TooLarge(f"the body has {len(body)} bytes; the limit is {limit}", code=code,
                       limit=limit)
    try:
        data = _decoder.decode(body)
    except UnicodeDecodeError as exc:
        raise InvalidUtf8("the body is not valid UTF-8") from exc
    except RecursionError as exc:
        raise TooDeep(f"the body nests deeper than {MAX_DEPTH} levels") from exc
    except msgspec.DecodeError as exc:
        text = str(exc)
        if "utf-8" in text.lower():
            raise InvalidUtf8("the body is not valid UTF-8") from exc
        raise InvalidJson(f"the body is not valid JSON: {text}") from exc
    if not isinstance(data, dict):
        raise InvalidJson("the body must be a JSON object")
    return data


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of containers, stopping early past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item if isinstance(v, dict | list))
    return deepest


def parse_time(value: Any, index: int | None, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise InvalidEvent(f"{field} must be an ISO-8601 string", index=index, field=field)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidEvent(f"{field} is not an ISO-8601 time: {value[:40]!r}", index=index,
                           field=field) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidEvent(f"{field} is out of range", index=index, field=field) from exc


def corrected_time(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """The Spec's clock-skew correction: ``receivedAt - (sentAt - timestamp)``.

    A device whose clock is off shifts ``timestamp`` and ``sentAt`` alike, so their
    difference (how long the event waited on the device) is trustworthy.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    try:
        return received_at - (sent_at - timestamp)
    except OverflowError:
        return received_at


def _id(raw: dict[str, Any], key: str, index: int | None) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidEvent(f"{key} must be a string", index=index, field=key)
    text = str(value).strip()
    if len(text) > MAX_ID_LENGTH:
        raise InvalidEvent(f"{key} is longer than {MAX_ID_LENGTH} characters", index=index,
                           field=key)
    return text or None


def _obj(raw: dict[str, Any], key: str, index: int | None) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"{key} must be an object", index=index, field=key)
    return value


def _text(raw: dict[str, Any], key: str, index: int | None, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise InvalidEvent(f"{key} is required", index=index, field=key)
        return None
    if not isinstance(value, str) or len(value) > 200:
        raise InvalidEvent(f"{key} must be a string of at most 200 characters", index=index,
                           field=key)
    return value


def message_key(source_id: str, message_id: str) -> bytes:
    """The 16-byte de-duplication key of a message within its source."""
    return hashlib.blake2b(f"{source_id}\x1f{message_id}".encode(), digest_size=16).digest()


def normalise(
    raw: Any, *, index: int | None, kind: str | None, received_at: datetime,
    batch_sent_at: datetime | None, channel: str, check_size: bool,
) -> dict[str, Any]:
    """One Spec message as the ``ingest.<type>`` payload; ``occurred_at`` and ``type`` added."""
    if not isinstance(raw, dict):
        raise InvalidEvent("each event must be an object", index=index, field="")
    if check_size and len(_encoder.encode(raw)) > MAX_EVENT_BYTES:
        raise TooLarge(f"an event exceeds {MAX_EVENT_BYTES} bytes", code="ingest.event_too_large",
                       index=index, limit=MAX_EVENT_BYTES)
    if depth(raw) > MAX_DEPTH:
        raise TooDeep(f"the event nests deeper than {MAX_DEPTH} levels", index=index)
    typ = kind or raw.get("type")
    if typ not in TYPES:
        raise InvalidEvent(f"type must be one of {', '.join(TYPES)}", index=index, field="type")
    user_id, anonymous_id = _id(raw, "userId", index), _id(raw, "anonymousId", index)
    if user_id is None and anonymous_id is None:
        raise MissingIdentity("every event needs a userId or an anonymousId", index=index,
                              field="userId")
    context = _obj(raw, "context", index)
    properties = _obj(raw, "properties", index)
    traits = _obj(raw, "traits", index)
    _obj(raw, "integrations", index)
    timestamp = parse_time(raw.get("timestamp") or raw.get("originalTimestamp"), index,
                           "timestamp")
    sent_at = parse_time(raw.get("sentAt"), index, "sentAt") or batch_sent_at
    occurred = corrected_time(timestamp, sent_at, received_at)
    message_id = _id(raw, "messageId", index)
    if message_id is None:
        # No id from the client: derive one from the content so a retry is still recognised.
        message_id = "derived-" + hashlib.sha256(_encoder.encode(raw)).hexdigest()[:32]
    ch = context.get("channel")
    payload: dict[str, Any] = {
        "message_id": message_id, "user_id": user_id, "anonymous_id": anonymous_id,
        "properties": properties, "traits": traits or dict(context.get("traits") or {}),
        "context": context, "timestamp": occurred.isoformat(),
        "channel": ch if isinstance(ch, str) and ch in CHANNELS else channel,
        "type": typ, "occurred_at": occurred,
    }
    if typ == "track":
        payload["event"] = _text(raw, "event", index, required=True)
    elif typ in ("page", "screen"):
        payload["name"] = _text(raw, "name", index, required=False)
        payload["category"] = _text(raw, "category", index, required=False)
    elif typ == "group":
        payload["group_id"] = _id(raw, "groupId", index)
        if payload["group_id"] is None:
            raise InvalidEvent("groupId is required", index=index, field="groupId")
    elif typ == "alias":
        payload["previous_id"] = _id(raw, "previousId", index)
        if payload["previous_id"] is None:
            raise InvalidEvent("previousId is required", index=index, field="previousId")
        if user_id is None:
            raise MissingIdentity("alias needs a userId", index=index, field="userId")
    return payload


def normalise_batch(
    body: dict[str, Any], *, received_at: datetime, channel: str, raw_size: int,
) -> list[dict[str, Any]]:
    """Every message of a ``/v1/batch`` body, or the first refusal (nothing is kept)."""
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise InvalidEvent("batch must be an array of events", index=None, field="batch")
    sent_at = parse_time(body.get("sentAt"), None, "sentAt")
    context = body.get("context")
    check_size = raw_size > MAX_EVENT_BYTES
    out = []
    for i, raw in enumerate(batch):
        if isinstance(raw, dict) and isinstance(context, dict) and "context" not in raw:
            raw = {**raw, "context": context}
        out.append(normalise(raw, index=i, kind=None, received_at=received_at,
                             batch_sent_at=sent_at, channel=channel, check_size=check_size))
    return out
