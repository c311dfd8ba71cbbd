"""Domain errors with stable codes, mapped to RFC 9457 problem+json in `kunde.web.problems`.

Every feature raises subclasses of `KundeError` (or `KundeError` itself with a
feature-prefixed code such as ``loyalty.insufficient_points``). The code is part
of the public API: clients branch on it, so it never changes once released.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KundeError(Exception):
    """A failure a caller can understand and act on."""

    status: ClassVar[int] = 400
    code: str = "kunde.error"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        status: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self._status = status
        self.extra = extra

    @property
    def http_status(self) -> int:
        return self._status if self._status is not None else type(self).status


class InvalidInput(KundeError):
    status = 422
    code = "request.invalid"


class NotFound(KundeError):
    status = 404
    code = "resource.not_found"


class Conflict(KundeError):
    status = 409
    code = "resource.conflict"


class Unauthenticated(KundeError):
    status = 401
    code = "auth.unauthenticated"


class Forbidden(KundeError):
    status = 403
    code = "auth.forbidden"


class TooManyRequests(KundeError):
    status = 429
    code = "rate.limited"


class Unavailable(KundeError):
    status = 503
    code = "service.unavailable"


class ConfigurationError(Exception):
    """Settings or environment that make it unsafe or impossible to start."""
