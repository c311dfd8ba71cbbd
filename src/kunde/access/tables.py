from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import local, reference
from kunde.store.tables import metadata
from kunde.store.types import UtcDateTime

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("write_key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime),
)

staff_users = sa.Table(
    "staff_users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, index=True),
    sa.Column("ip", sa.String(64), nullable=False, index=True),
    sa.Column("at", UtcDateTime, nullable=False),
)

# -- distribution (Citus) -------------------------------------------------------------
reference("credentials and staff: a few staff-written rows every request checks",
          api_keys, sources, staff_users)
local("the log-in abuse guard counts failures by email and by IP address together, "
      "across every account: short-lived rows kept in one place", login_failures)
