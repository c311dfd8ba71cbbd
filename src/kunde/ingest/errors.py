"""Stable error codes of the Tracking API (clients branch on them)."""

from __future__ import annotations

from kunde.core.errors import KundeError


class IngestError(KundeError):
    """A request the Tracking API refuses; nothing of it is stored."""

    status = 400
    code = "ingest.invalid"


class InvalidEvent(IngestError):
    """One event of a batch is malformed: ``index`` and ``field`` say where."""

    code = "ingest.invalid_event"


class MissingIdentity(IngestError):
    code = "ingest.missing_identity"


class InvalidJson(IngestError):
    code = "ingest.invalid_json"


class InvalidUtf8(IngestError):
    code = "ingest.invalid_utf8"


class TooDeep(IngestError):
    code = "ingest.too_deep"


class TooLarge(IngestError):
    status = 413
    code = "ingest.too_large"


class BadEncoding(IngestError):
    status = 415
    code = "ingest.unsupported_encoding"


class UnknownWriteKey(IngestError):
    status = 401
    code = "ingest.unknown_write_key"
