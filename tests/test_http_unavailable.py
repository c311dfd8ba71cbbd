"""Which database failures count as "unavailable" (fast 503) rather than a bug (500)."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from kunde.web.problems import is_unavailable


def _wrapped(cls: type[DBAPIError], orig: Exception) -> DBAPIError:
    return cls("SELECT 1", {}, orig)


def test_postgres_starting_up_is_unavailable() -> None:
    orig = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
    assert is_unavailable(_wrapped(DBAPIError, orig))
    assert is_unavailable(_wrapped(OperationalError, Exception("the database system is "
                                                              "starting up")))


def test_starting_up_behind_the_drivers_adapter_error_is_unavailable() -> None:
    # What SQLAlchemy raises: DBAPIError(orig=adapter Error), the adapter error raised
    # from asyncpg's CannotConnectNowError.
    class Error(Exception):
        pass

    def adapt() -> None:
        try:
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        except Exception as driver:
            raise Error("the database system is starting up") from driver

    with pytest.raises(Error) as adapted:
        adapt()
    assert is_unavailable(_wrapped(DBAPIError, adapted.value))
    assert not is_unavailable(_wrapped(DBAPIError, Error("syntax error at or near x")))


def test_statement_errors_are_not_unavailable() -> None:
    assert not is_unavailable(_wrapped(IntegrityError, Exception("duplicate key value")))
    assert not is_unavailable(_wrapped(OperationalError, Exception("no such column: x")))
    assert not is_unavailable(ValueError("connect"))
