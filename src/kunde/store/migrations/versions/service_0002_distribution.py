"""service: distributable (Citus); what must be unique across cases moves to service_keys.

Revision ID: service_0002

Cases, their messages and activity are distributed by case id: messages and activity get
the primary key (case_id, id). Feedback is distributed by customer: primary key
(customer_id, id), the link's token hash unique per customer and indexed alone. Case
tokens, case and feedback causes and email Message-IDs were unique columns; they stay
unique across all rows in ``service_keys``, filled here from the existing rows, and the
columns keep plain indexes for lookups.

service_0001 builds its tables from ``tables.py`` as it stands, so on a new database
they have this shape already: each step changes only what differs (store/migrate_ops.py).
"""

import sqlalchemy as sa
from alembic import op

from kunde.store.migrate_ops import (
    create_index_if_missing,
    create_table_if_missing,
    drop_unique_if_present,
    rekey,
)

revision = "service_0002"
down_revision = "service_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if create_table_if_missing(
        "service_keys",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("ref_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_service_keys"),
    ):
        for prefix, column, table, where in (
                ("case-token:", "token", "service_cases", ""),
                ("case-cause:", "cause", "service_cases", " WHERE cause IS NOT NULL"),
                ("feedback-cause:", "cause", "service_feedback", ""),
                ("email:", "email_message_id", "service_messages",
                 " WHERE email_message_id IS NOT NULL")):
            op.execute(f"INSERT INTO service_keys (key, ref_id) "  # noqa: S608 - constants
                       f"SELECT '{prefix}' || {column}, id FROM {table}{where}")

    drop_unique_if_present("service_cases", ["token"], ["cause"])
    create_index_if_missing("ix_service_cases_token", "service_cases", ["token"])
    create_index_if_missing("ix_service_cases_cause", "service_cases", ["cause"])

    rekey("service_messages", ["case_id", "id"], drop_unique=[["email_message_id"]])
    create_index_if_missing("ix_service_messages_email_message_id", "service_messages",
                            ["email_message_id"])
    rekey("service_activity", ["case_id", "id"])

    rekey("service_feedback", ["customer_id", "id"], drop_unique=[["token_hash"], ["cause"]],
          add_unique=[["customer_id", "token_hash"]])
    create_index_if_missing("ix_service_feedback_token_hash", "service_feedback",
                            ["token_hash"])


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
