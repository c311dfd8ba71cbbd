"""The migrated schema is ready for Citus: every table declares how it is distributed,
and the database as migrated satisfies what that needs (store/distribution.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.store import distribution, migrate
from kunde.store.tables import naming


def _reflected(sync_conn: Any) -> sa.MetaData:
    md = sa.MetaData(naming_convention=naming)
    md.reflect(sync_conn)
    md.remove(md.tables["alembic_version"])
    return md


async def test_migrated_schema_is_distributable(kernel: Kernel) -> None:
    declared = migrate.all_metadata()
    async with kernel.db.reader.connect() as conn:
        live = await conn.run_sync(_reflected)
    assert set(live.tables) == set(declared.tables)
    for name, table in live.tables.items():
        spec = distribution.spec_of(declared.tables[name])
        if spec is not None:
            table.info["distribution"] = spec
    assert distribution.problems(live) == []


def test_customer_tables_are_colocated_with_customers() -> None:
    md = migrate.all_metadata()
    specs = {name: distribution.spec_of(t) for name, t in md.tables.items()}
    assert specs["customers"] == distribution.Distribution("customer", "id", "customer")
    # A table that names a customer and is not distributed by it says why.
    for name, table in md.tables.items():
        spec = specs[name]
        assert spec is not None, name
        if "customer_id" in table.c and spec.kind != "customer":
            assert len(spec.reason) > 20, f"{name}: why is it not distributed by customer?"
    customer_tables = [n for n, s in specs.items() if s and s.kind == "customer"]
    assert len(customer_tables) >= 30


def test_the_check_finds_what_sharding_cannot_take() -> None:
    md = sa.MetaData(naming_convention=naming)
    parent = sa.Table("p", md, sa.Column("customer_id", sa.String(36), primary_key=True))
    child = sa.Table(
        "c", md,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("customer_id", sa.String(36)),
        sa.Column("token", sa.String(36), unique=True),
        sa.Column("p_id", sa.String(36), sa.ForeignKey("p.customer_id")),
    )
    undeclared = sa.Table("u", md, sa.Column("id", sa.Integer, primary_key=True))
    distribution.by_customer(parent, child)
    found = distribution.problems(md)
    assert "c: distribution column customer_id is nullable" in found
    assert "c: primary key (id) lacks customer_id" in found
    assert "c: unique uq_c_token (token) lacks customer_id" in found
    assert "c → p: the foreign key does not join on the distribution columns" in found
    assert f"{undeclared.name}: no distribution declared (store/distribution.py)" in found


def test_citus_statements_distribute_every_declared_table() -> None:
    md = migrate.all_metadata()
    ddl = distribution.citus_ddl(md)
    first_distributed = next(i for i, s in enumerate(ddl) if "create_distributed" in s)
    assert ddl[first_distributed] == "SELECT create_distributed_table('customers', 'id');"
    assert all("create_reference_table" in s for s in ddl[:first_distributed])
    local = {n for n, t in md.tables.items()
             if (s := distribution.spec_of(t)) is not None and s.kind == "local"}
    assert "events" in local
    assert len(ddl) == len(md.tables) - len(local)
    assert "SELECT create_distributed_table('traits', 'customer_id', " \
           "colocate_with => 'customers');" in ddl


def test_kunde_schema_citus_prints_the_statements(tmp_path: Path) -> None:
    from test_cli import kunde

    r = kunde(tmp_path, "schema", "citus")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "SELECT create_distributed_table('customers', 'id');" in lines
    assert all(line.startswith("SELECT create_") for line in lines)


def test_updates_that_would_move_a_row_between_shards_are_recognised() -> None:
    md = migrate.all_metadata()
    moved = distribution.sets_distribution_column
    assert moved("UPDATE loyalty_lots SET customer_id=?, remaining=? WHERE id=?", md) \
        == "loyalty_lots.customer_id"
    assert moved('UPDATE "messages" SET status=$1::VARCHAR WHERE customer_id = $2', md) is None
    # commerce orders shard by order id: re-pointing an order's customer is allowed.
    assert moved("UPDATE commerce_orders SET customer_id=? WHERE id=?", md) is None
    assert moved("SELECT customer_id = 1 FROM loyalty_lots", md) is None


def test_each_key_group_starts_a_colocation_group_of_its_own() -> None:
    ddl = distribution.citus_ddl(migrate.all_metadata())
    assert "SELECT create_distributed_table('commerce_orders', 'id', " \
           "colocate_with => 'none');" in ddl
    assert "SELECT create_distributed_table('commerce_order_lines', 'order_id', " \
           "colocate_with => 'commerce_orders');" in ddl


def _toy_rekey(conn: Any, times: int) -> tuple[Any, ...]:
    """Create a toy table with a row, rekey it ``times`` times; its shape and rows after,
    and the statements each run sent that were not reading the schema."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    from kunde.store.migrate_ops import rekey

    md = sa.MetaData(naming_convention=naming)
    toy = sa.Table("toy_rekey", md, sa.Column("id", sa.String(36), primary_key=True),
                   sa.Column("customer_id", sa.String(36)),
                   sa.Column("token", sa.String(36), unique=True),
                   sa.Column("kind", sa.String(8), index=True))
    md.create_all(conn)
    conn.execute(toy.insert(), [{"id": "a", "customer_id": "c1", "token": "t", "kind": "k"}])
    changes: list[list[str]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(" ", 1)[0].upper() in (
                "ALTER", "CREATE", "DROP", "INSERT", "UPDATE", "DELETE"):
            changes[-1].append(statement)

    sa.event.listen(conn, "before_cursor_execute", record)
    try:
        for _ in range(times):
            changes.append([])
            with Operations.context(MigrationContext.configure(conn)):
                rekey("toy_rekey", ["customer_id", "id"], not_null=["customer_id"],
                      drop_unique=[["token"]], add_unique=[["customer_id", "token"]],
                      drop_index=["ix_toy_rekey_kind"])
    finally:
        sa.event.remove(conn, "before_cursor_execute", record)
    inspect = sa.inspect(conn)
    shape = (inspect.get_pk_constraint("toy_rekey")["constrained_columns"],
             [u["column_names"] for u in inspect.get_unique_constraints("toy_rekey")],
             [i["name"] for i in inspect.get_indexes("toy_rekey")
              if "duplicates_constraint" not in i],  # PostgreSQL: a unique's index
             {c["name"]: c["nullable"] for c in inspect.get_columns("toy_rekey")},
             conn.execute(sa.text("SELECT id, customer_id, token FROM toy_rekey")).all(),
             changes)
    conn.execute(sa.text("DROP TABLE toy_rekey"))
    return shape


async def test_rekey_gives_a_table_new_keys_and_keeps_its_rows(kernel: Kernel) -> None:
    async with kernel.db.writer.connect() as conn:
        pk, uniques, indexes, nullable, rows, _ = await conn.run_sync(_toy_rekey, 1)
        await conn.commit()
    assert pk == ["customer_id", "id"]
    assert uniques == [["customer_id", "token"]]
    assert indexes == []
    assert nullable["customer_id"] is False
    assert [tuple(r) for r in rows] == [("a", "c1", "t")]


async def test_rekey_changes_nothing_on_a_table_already_so_keyed(kernel: Kernel) -> None:
    # A first revision builds its tables from tables.py as they stand, so on a new
    # database the re-keying revision after it finds the new keys in place (ADR 0004).
    async with kernel.db.writer.connect() as conn:
        pk, uniques, indexes, nullable, rows, changes = await conn.run_sync(_toy_rekey, 2)
        await conn.commit()
    first, second = changes
    assert first != []
    assert second == []
    assert pk == ["customer_id", "id"]
    assert uniques == [["customer_id", "token"]]
    assert indexes == []
    assert nullable["customer_id"] is False
    assert [tuple(r) for r in rows] == [("a", "c1", "t")]
