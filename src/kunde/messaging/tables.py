"""Tables of the messaging feature.

``messages`` is both the outbox (status, attempts, next_attempt_at) and the
communication archive (the rendered subject and body, sealed under the
customer's key by the vault). ``message_keys`` holds each idempotency key once,
whichever customer the message went to. ``webhook_endpoints`` are the destinations
of the webhook channel.
"""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_customer, by_key, reference
from kunde.store.tables import metadata
from kunde.store.types import UtcDateTime, id_column

messages = sa.Table(
    "messages",
    metadata,
    # The id is derived from the idempotency key: looked up alone by the dispatcher.
    sa.Column("id", sa.String(36), nullable=False, index=True),
    sa.Column("customer_id", sa.String(36), nullable=False),
    # Unique in message_keys: a retried command enqueues the same message once.
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("channel", sa.String(20), nullable=False),
    sa.Column("template", sa.String(64), nullable=False),
    sa.Column("purpose", sa.String(40), nullable=False),
    sa.Column("locale", sa.String(16)),
    # "smtp" or "webhook:<endpoint id>": the circuit breaker's key.
    sa.Column("destination", sa.String(80), nullable=False),
    # The template context as JSON, sealed under the customer's key.
    sa.Column("context", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime),
    # Archive of what was sent, sealed under the customer's key.
    sa.Column("recipient", sa.LargeBinary),
    sa.Column("subject", sa.LargeBinary),
    sa.Column("body", sa.LargeBinary),
    sa.Index("ix_messages_status_next_attempt_at", "status", "next_attempt_at"),
    sa.Index("ix_messages_customer_id_created_at", "customer_id", "created_at"),
    sa.PrimaryKeyConstraint("customer_id", "id"),
)

# One row per idempotency key ever used, written in the enqueuing transaction: the key
# was used once, even when a retry names another customer record (after a merge).
message_keys = sa.Table(
    "message_keys",
    metadata,
    sa.Column("idempotency_key", sa.String(200), primary_key=True),
    sa.Column("message_id", sa.String(36), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    id_column(),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("url", sa.String(2000), nullable=False),
    # The shared signing secret (whsec_…): needed in clear to sign.
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("disabled_at", UtcDateTime),
)

by_customer(messages)
by_key("message_key", "an idempotency key is used once across all customers: a retry "
       "after a merge names another customer record and must still find its message",
       idempotency_key=message_keys)
reference("webhook destinations: a handful of rows, configured by staff", webhook_endpoints)
