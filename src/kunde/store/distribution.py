"""How every table would be laid out on a sharded PostgreSQL (Citus), declared and checked.

Each feature's ``tables.py`` ends by declaring, for each of its tables, one of four kinds:

- ``by_customer``: rows belong to one customer record and are distributed by the
  customer id column, co-located with ``customers`` so that one customer's reads and
  writes stay on one shard;
- ``by_key``: rows are distributed by another key of their own, in a named co-location
  group (an order and its lines, an identifier and its owner), for data whose natural
  unit is not the customer (guest carts, globally unique identifiers);
- ``reference``: small tables every node holds a copy of (catalogue, configuration,
  staff, programme rules);
- ``local``: coordinator-only tables that need one global order or one global lock
  (the event log, consumer positions, partition leases).

:func:`problems` checks what sharding needs: the distribution column exists and is
``NOT NULL``; the primary key and every unique constraint or unique index include it;
a foreign key between distributed tables joins on it inside one co-location group;
reference tables refer only to reference tables. ``tests/test_schema_distribution.py``
runs the check on the migrated schema, and :func:`citus_ddl` prints the statements that
distribute an existing Kunde database (``kunde schema citus``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

Kind = Literal["customer", "key", "reference", "local"]
CUSTOMER_GROUP = "customer"
_ANCHOR = "customers"


@dataclass(frozen=True)
class Distribution:
    kind: Kind
    column: str | None = None   # the distribution column, for customer and key kinds
    group: str | None = None    # the co-location group, for customer and key kinds
    reason: str = ""            # why a table is not distributed by customer


def _declare(table: sa.Table, spec: Distribution) -> None:
    if "distribution" in table.info:
        raise ValueError(f"{table.name}: distribution declared twice")
    table.info["distribution"] = spec


def by_customer(*tables: sa.Table, column: str = "customer_id") -> None:
    """Distribute these tables by their customer id, co-located with ``customers``."""
    for t in tables:
        _declare(t, Distribution("customer", column, CUSTOMER_GROUP))


def by_key(group: str, reason: str, **columns: sa.Table | tuple[sa.Table, str]) -> None:
    """Distribute tables by a key of their own, co-located within ``group``.

    ``by_key("order", "...", id=orders, order_id=(order_lines, "order_id"))`` reads:
    ``orders`` by its ``id``; the tuple form names table and column explicitly."""
    if not reason:
        raise ValueError(f"group {group}: say why it is not distributed by customer")
    for column, item in columns.items():
        table, col = item if isinstance(item, tuple) else (item, column)
        _declare(table, Distribution("key", col, group, reason))


def reference(reason: str, *tables: sa.Table) -> None:
    """Small tables replicated to every node."""
    for t in tables:
        _declare(t, Distribution("reference", reason=reason))


def local(reason: str, *tables: sa.Table) -> None:
    """Tables kept on the coordinator: one global order or lock."""
    for t in tables:
        _declare(t, Distribution("local", reason=reason))


def spec_of(table: sa.Table) -> Distribution | None:
    spec = table.info.get("distribution")
    return spec if isinstance(spec, Distribution) else None


def _unique_column_sets(table: sa.Table) -> Iterable[tuple[str, list[str]]]:
    yield "primary key", [c.name for c in table.primary_key.columns]
    for con in table.constraints:
        if isinstance(con, sa.UniqueConstraint):
            yield f"unique {con.name or ''}".strip(), [c.name for c in con.columns]
    for idx in table.indexes:
        if idx.unique:
            yield f"unique index {idx.name}", [c.name for c in idx.columns]


def problems(md: sa.MetaData) -> list[str]:
    """Everything in ``md`` that would stop it from being distributed as declared."""
    found: list[str] = []
    for table in md.sorted_tables:
        spec = spec_of(table)
        if spec is None:
            found.append(f"{table.name}: no distribution declared (store/distribution.py)")
            continue
        if spec.kind in ("reference", "local"):
            if not spec.reason:
                found.append(f"{table.name}: {spec.kind} table without a reason")
            for fk in table.foreign_key_constraints:
                target = spec_of(fk.referred_table)
                if spec.kind == "reference" and (target is None or target.kind != "reference"):
                    found.append(f"{table.name}: a reference table refers to "
                                 f"{fk.referred_table.name}, which is not one")
            continue
        col = spec.column or ""
        if col not in table.c:
            found.append(f"{table.name}: distribution column {col} does not exist")
            continue
        if table.c[col].nullable:
            found.append(f"{table.name}: distribution column {col} is nullable")
        for what, cols in _unique_column_sets(table):
            if col not in cols:
                found.append(f"{table.name}: {what} ({', '.join(cols)}) lacks {col}")
        for fk in table.foreign_key_constraints:
            found.extend(_foreign_key_problems(table, spec, fk))
    return found


def _foreign_key_problems(table: sa.Table, spec: Distribution,
                          fk: sa.ForeignKeyConstraint) -> list[str]:
    target = spec_of(fk.referred_table)
    name = f"{table.name} → {fk.referred_table.name}"
    if target is None or target.kind == "reference":
        return []
    if target.kind == "local":
        return [f"{name}: a distributed table refers to a coordinator-only table"]
    if target.group != spec.group:
        return [f"{name}: refers across co-location groups ({spec.group} → {target.group})"]
    pairs = {(e.parent.name, e.column.name) for e in fk.elements}
    if (spec.column, target.column) not in pairs:
        return [f"{name}: the foreign key does not join on the distribution columns"]
    return []


def citus_ddl(md: sa.MetaData) -> list[str]:
    """The Citus statements that distribute a migrated Kunde database as declared."""
    out: list[str] = []
    def order(t: sa.Table) -> tuple[bool, bool, bool]:
        # Reference tables first, then each group's root (the table keyed by its own id).
        spec = spec_of(t)
        return (spec is None or spec.kind != "reference", t.name != _ANCHOR,
                spec is None or spec.column != "id")

    ordered = sorted(md.sorted_tables, key=order)
    anchors: dict[str, str] = {}
    for table in ordered:
        spec = spec_of(table)
        if spec is None or spec.kind == "local":
            continue
        if spec.kind == "reference":
            out.append(f"SELECT create_reference_table('{table.name}');")
            continue
        group = spec.group or ""
        colocate = anchors.setdefault(group, table.name)
        if colocate != table.name:
            with_ = f", colocate_with => '{colocate}'"
        elif group != CUSTOMER_GROUP:
            with_ = ", colocate_with => 'none'"  # a group of its own, not the customers'
        else:
            with_ = ""
        out.append(f"SELECT create_distributed_table('{table.name}', '{spec.column}'{with_});")
    return out


_UPDATE = re.compile(
    r'^\s*UPDATE\s+"?(\w+)"?\s+SET\s+(.*?)(?:\s+WHERE\s|\s+RETURNING\s|\s+FROM\s|$)',
    re.IGNORECASE | re.DOTALL)


def sets_distribution_column(sql: str, md: sa.MetaData) -> str | None:
    """``table.column`` when ``sql`` is an UPDATE that sets a distribution column.

    Citus refuses to change a row's distribution column (the row would have to move
    to another shard); code that moves rows between customers deletes and re-inserts
    them. The test suite runs every statement through this check."""
    match = _UPDATE.match(sql)
    if not match or match.group(1) not in md.tables:
        return None
    spec = spec_of(md.tables[match.group(1)])
    if spec is None or spec.column is None:
        return None
    if re.search(rf'(?:^|[\s,]){spec.column}"?\s*=', match.group(2)):
        return f"{match.group(1)}.{spec.column}"
    return None
