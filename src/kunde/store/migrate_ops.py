"""Schema operations that migrations share, written once for SQLite and PostgreSQL.

Constraint names follow the metadata's naming convention (``pk_<table>``,
``uq_<table>_<columns>``), so a migration can name what it replaces. On SQLite,
Alembic's batch mode rebuilds the table (copy, drop, rename) inside the migration's
transaction; on PostgreSQL the same calls are plain ``ALTER TABLE`` statements.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


def unique_name(table: str, columns: Sequence[str]) -> str:
    return f"uq_{table}_{'_'.join(columns)}"


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
    convention derives the names); ``drop_index`` names indexes made redundant."""
    for name in drop_index:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table(table) as batch:
        for column in not_null:
            batch.alter_column(column, nullable=False)
        for columns in drop_unique:
            batch.drop_constraint(unique_name(table, columns), type_="unique")
        batch.drop_constraint(f"pk_{table}", type_="primary")
        batch.create_primary_key(f"pk_{table}", list(primary_key))
        for columns in add_unique:
            batch.create_unique_constraint(unique_name(table, columns), list(columns))
