"""fulfilment: shipments, checkpoints, tracking inbox, unknown tracking numbers, returns.

The tables as they stood at this revision (later revisions change them with ``op.*``),
so that a new database goes through the same steps as one migrated before them.

Revision ID: fulfilment_0001
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.tables import naming
from kunde.store.types import Json, UtcDateTime, id_column

revision = "fulfilment_0001"
down_revision = None
branch_labels = ("fulfilment",)
depends_on = "core_0001"

md = sa.MetaData(naming_convention=naming)

shipments = sa.Table(
    "shipments",
    md,
    id_column(),
    sa.Column("order_id", sa.String(36), nullable=False),
    sa.Column("order_number", sa.String(40), nullable=False),
    sa.Column("customer_id", sa.String(36)),
    sa.Column("kind", sa.String(10), nullable=False),  # outbound | return
    sa.Column("return_id", sa.String(36)),
    sa.Column("carrier", sa.String(40), nullable=False),
    sa.Column("service", sa.String(40), nullable=False),
    sa.Column("tracking_number", sa.String(80), nullable=False),
    # The unguessable part of the public tracking link.
    sa.Column("token", sa.String(40), nullable=False, unique=True),
    sa.Column("lines", Json, nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("status_at", UtcDateTime, nullable=False),
    sa.Column("first_scan_at", UtcDateTime),
    sa.Column("last_scan_at", UtcDateTime),
    sa.Column("eta", sa.Date),
    sa.Column("promised_date", sa.Date),
    sa.Column("promised_by", UtcDateTime),
    sa.Column("expected_scan_by", UtcDateTime),
    sa.Column("is_open", sa.Boolean, nullable=False),
    sa.Column("risk", sa.String(10), nullable=False),  # ok | at_risk | late
    sa.Column("risk_reason", sa.String(40)),
    sa.Column("risk_since", UtcDateTime),
    # Set when the risk rose and the care policy has not acted on it yet.
    sa.Column("care_due", sa.Boolean, nullable=False),
    sa.Column("delivered_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_shipments_tracking_number", "tracking_number"),
    sa.Index("ix_shipments_order_id", "order_id"),
    sa.Index("ix_shipments_customer_id", "customer_id"),
    sa.Index("ix_shipments_open_promise", "is_open", "risk", "promised_by"),
    sa.Index("ix_shipments_open_silence", "is_open", "risk", "expected_scan_by"),
    sa.Index("ix_shipments_risk_created", "risk", "created_at"),
    sa.Index("ix_shipments_status_created", "status", "created_at"),
    sa.Index("ix_shipments_care_due", "id", sqlite_where=sa.text("care_due"),
             postgresql_where=sa.text("care_due")),
)

checkpoints = sa.Table(
    "checkpoints",
    md,
    id_column(),
    sa.Column("shipment_id", sa.String(36), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("message", sa.String(500), nullable=False),
    sa.Column("location", sa.String(200), nullable=False),
    sa.Column("carrier_code", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("shipment_id", "fingerprint"),
    sa.Index("ix_checkpoints_shipment_id_at", "shipment_id", "at"),
)

tracking_inbox = sa.Table(
    "tracking_inbox",
    md,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), sa.Identity(),
              primary_key=True),
    sa.Column("carrier", sa.String(40), nullable=False),
    sa.Column("msg_id", sa.String(120), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("updates", Json, nullable=False),
    sa.Column("processed_at", UtcDateTime),
    sa.Column("outcome", sa.String(200)),
    # Replay protection: a message id is accepted once per carrier.
    sa.UniqueConstraint("carrier", "msg_id"),
    sa.Index("ix_tracking_inbox_pending", "seq", sqlite_where=sa.text("processed_at IS NULL"),
             postgresql_where=sa.text("processed_at IS NULL")),
    sa.Index("ix_tracking_inbox_received_at", "received_at"),
    sqlite_autoincrement=True,
)

unknown_tracking = sa.Table(
    "unknown_tracking",
    md,
    sa.Column("carrier", sa.String(40), primary_key=True),
    sa.Column("tracking_number", sa.String(80), primary_key=True),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Column("seen_count", sa.Integer, nullable=False),
    sa.Column("last_status", sa.String(24), nullable=False),
    # The updates themselves (newest 50), applied when the shipment becomes known.
    sa.Column("updates", Json, nullable=False),
    sa.Column("resolved_at", UtcDateTime),
    sa.Column("shipment_id", sa.String(36)),
    sa.Index("ix_unknown_tracking_tracking_number", "tracking_number"),
)

returns = sa.Table(
    "returns",
    md,
    id_column(),
    sa.Column("order_id", sa.String(36), nullable=False),
    sa.Column("order_number", sa.String(40), nullable=False),
    sa.Column("customer_id", sa.String(36)),
    sa.Column("rma", sa.String(20), nullable=False, unique=True),
    # requested | approved | rejected | in_transit | received | refunded
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("lines", Json, nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("refund_trigger", sa.String(12), nullable=False),
    sa.Column("refund_method", sa.String(16), nullable=False),
    sa.Column("label_ref", sa.String(40)),
    sa.Column("shipment_id", sa.String(36)),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    sa.Column("decided_at", UtcDateTime),
    sa.Column("decided_by", sa.String(100)),
    sa.Column("first_scan_at", UtcDateTime),
    sa.Column("received_at", UtcDateTime),
    # When the policy's trigger fired; the refund SLA runs from here.
    sa.Column("refund_due_at", UtcDateTime),
    sa.Column("refunded_at", UtcDateTime),
    sa.Column("refund_id", sa.String(36)),
    sa.Column("refund_error", sa.String(500)),
    sa.Index("ix_returns_status_requested_at", "status", "requested_at"),
    sa.Index("ix_returns_customer_id", "customer_id"),
    sa.Index("ix_returns_order_id", "order_id"),
    sa.Index("ix_returns_refund_due", "refund_due_at",
             sqlite_where=sa.text("refunded_at IS NULL AND refund_due_at IS NOT NULL"),
             postgresql_where=sa.text("refunded_at IS NULL AND refund_due_at IS NOT NULL")),
)

fulfilment_config = sa.Table(
    "fulfilment_config",
    md,
    # "policy" (the delay/returns policy) or "carrier:<name>" (webhook secrets).
    sa.Column("key", sa.String(60), primary_key=True),
    sa.Column("value", Json, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)


def upgrade() -> None:
    md.create_all(op.get_bind())


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
