"""Small dialect-aware statement builders shared by every feature."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(dialect: str, table: sa.Table, index_elements: list[str] | None = None) -> Any:
    """INSERT … ON CONFLICT DO NOTHING: the building block of idempotent writes."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=index_elements)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=index_elements)


def upsert(
    dialect: str,
    table: sa.Table,
    index_elements: list[str],
    update_columns: list[str],
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET the given columns from the new row."""
    ins: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    return ins.on_conflict_do_update(
        index_elements=index_elements,
        set_={c: getattr(ins.excluded, c) for c in update_columns},
    )
