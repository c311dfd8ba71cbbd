"""Schema operations that migrations share, written once for SQLite and PostgreSQL.

A feature's first revision builds its tables with ``create_tables`` from ``tables.py`` as
it stands today, so on a new database a later revision finds its changes already made,
while on a database migrated before that revision it must make them (ADR 0004). The
operations here therefore look at the live schema and change only what differs: each
``*_if_missing``/``*_if_present`` step and ``rekey`` does nothing when the table already
has the shape asked for, and the inspection helpers (``has_table``, ``columns``,
``primary_key``, ``unique_constraints``, ``indexes``) serve the checks a revision makes
itself, e.g. to backfill a column only when it has just been added.

Constraint names follow the metadata's naming convention (``pk_<table>``,
``uq_<table>_<columns>``), so a migration can name what it replaces. On SQLite,
Alembic's batch mode rebuilds the table (copy, drop, rename) inside the migration's
transaction; on PostgreSQL the same calls are plain ``ALTER TABLE`` statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def unique_name(table: str, columns: Sequence[str]) -> str:
    return f"uq_{table}_{'_'.join(columns)}"


# -- inspection (a fresh inspector each time: the schema changes between the calls) ------


def _inspector() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def has_table(name: str) -> bool:
    return _inspector().has_table(name)


def columns(table: str) -> dict[str, bool]:
    """The table's columns, each with whether it is nullable."""
    return {c["name"]: bool(c["nullable"]) for c in _inspector().get_columns(table)}


def primary_key(table: str) -> list[str]:
    """The primary key's columns, in key order."""
    return list(_inspector().get_pk_constraint(table)["constrained_columns"])


_current_key = primary_key  # `rekey` takes a parameter of that name


def unique_constraints(table: str) -> set[str]:
    return {str(u["name"]) for u in _inspector().get_unique_constraints(table)}


def indexes(table: str) -> set[str]:
    """The table's indexes by name; not those that back a unique constraint (PostgreSQL
    lists them too)."""
    return {str(i["name"]) for i in _inspector().get_indexes(table)
            if "duplicates_constraint" not in i}


# -- steps that are skipped where the schema already has them ----------------------------


def create_table_if_missing(name: str, *elements: Any) -> bool:
    """``op.create_table`` unless the table exists; says whether it created it (so the
    caller fills a new table from existing rows only once)."""
    if has_table(name):
        return False
    op.create_table(name, *elements)
    return True


def add_column_if_missing(table: str, column: sa.Column[Any]) -> bool:
    """``op.add_column`` unless the column exists; says whether it added it."""
    if column.name in columns(table):
        return False
    op.add_column(table, column)
    return True


def create_index_if_missing(name: str, table: str, index_columns: Sequence[str]) -> None:
    if name not in indexes(table):
        op.create_index(name, table, list(index_columns))


def drop_unique_if_present(table: str, *uniques: Sequence[str]) -> None:
    """Drop the unique constraints on these column lists that the table has."""
    present = unique_constraints(table)
    names = [n for n in (unique_name(table, c) for c in uniques) if n in present]
    if names:
        with op.batch_alter_table(table) as batch:
            for name in names:
                batch.drop_constraint(name, type_="unique")


def rekey(
    table: str,
    primary_key: Sequence[str],
    *,
    not_null: Sequence[str] = (),
    drop_unique: Sequence[Sequence[str]] = (),
    add_unique: Sequence[Sequence[str]] = (),
    drop_index: Sequence[str] = (),
) -> None:
    """Give ``table`` a new primary key and unique constraints, in one step.

    ``drop_unique``/``add_unique`` name constraints by their columns (the naming
    convention derives the names); ``drop_index`` names indexes made redundant.
    Only what differs from the live table changes: an index or unique constraint is
    dropped if present and added if missing, a column made NOT NULL if nullable, the
    primary key replaced if it has other columns; a table already so keyed is left
    alone (on SQLite, not even rebuilt)."""
    present_indexes = indexes(table)
    for name in drop_index:
        if name in present_indexes:
            op.drop_index(name, table_name=table)
    nullable = columns(table)
    uniques = unique_constraints(table)
    make_not_null = [c for c in not_null if nullable[c]]
    drop = [unique_name(table, c) for c in drop_unique if unique_name(table, c) in uniques]
    add = [c for c in add_unique if unique_name(table, c) not in uniques]
    new_key = _current_key(table) != list(primary_key)
    if not (make_not_null or drop or add or new_key):
        return
    with op.batch_alter_table(table) as batch:
        for column in make_not_null:
            batch.alter_column(column, nullable=False)
        for name in drop:
            batch.drop_constraint(name, type_="unique")
        if new_key:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", list(primary_key))
        for columns_ in add:
            batch.create_unique_constraint(unique_name(table, columns_), list(columns_))
