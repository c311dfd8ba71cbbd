"""Tables of the service feature: cases, their messages and activity, inbound mail kept for
review, macros and feedback requests. Free text about a person (subjects, bodies, contact
addresses, comments) is stored only as vault ciphertext (``*_enc`` columns).

``service_keys`` holds what must be unique across all cases and customers (case tokens,
the causes of automatic cases and feedback requests, email Message-IDs), written in the
transaction that creates the row it names."""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_customer, by_key, reference
from kunde.store.tables import metadata
from kunde.store.types import Json, UtcDateTime

service_cases = sa.Table(
    "service_cases",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # Threads email replies: "[K-TOKEN]" in the subject or case+TOKEN@ in the address.
    # Unique across cases through service_keys ("case-token:<token>").
    sa.Column("token", sa.String(8), nullable=False, index=True),
    sa.Column("customer_id", sa.String(36), index=True),
    # The vault subject the case's PII is sealed under: the customer, or the case itself
    # while its contact is unverified (so it never lands on a customer by guesswork).
    sa.Column("vault_subject", sa.String(36), nullable=False),
    sa.Column("contact_verified", sa.Boolean, nullable=False),
    sa.Column("contact_email_enc", sa.LargeBinary),
    sa.Column("contact_email_index", sa.String(32), index=True),
    sa.Column("subject_enc", sa.LargeBinary),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("queue", sa.String(32), nullable=False),
    sa.Column("assignee_id", sa.String(36)),
    sa.Column("assignee_name", sa.String(200)),
    sa.Column("tags", Json, nullable=False),
    sa.Column("order_id", sa.String(36)),
    sa.Column("shipment_id", sa.String(36)),
    sa.Column("return_id", sa.String(36)),
    # What opened an automatic case ("delay:<shipment>"): one case per cause, kept by
    # service_keys ("case-cause:<cause>").
    sa.Column("cause", sa.String(120), index=True),
    sa.Column("locale", sa.String(16)),
    sa.Column("opened_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("first_response_due", UtcDateTime, nullable=False),
    sa.Column("resolution_due", UtcDateTime, nullable=False),
    sa.Column("first_responded_at", UtcDateTime),
    sa.Column("solved_at", UtcDateTime),
    sa.Column("closed_at", UtcDateTime),
    sa.Column("escalated_at", UtcDateTime),
    sa.Column("last_message_at", UtcDateTime),
    sa.Index("ix_service_cases_status_queue", "status", "queue"),
    sa.Index("ix_service_cases_opened_at", "opened_at"),
)

service_messages = sa.Table(
    "service_messages",
    metadata,
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("case_id", sa.String(36), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),   # in | out | note
    sa.Column("channel", sa.String(16), nullable=False),    # email | portal | chat | staff
    sa.Column("author_kind", sa.String(16), nullable=False),  # customer | contact | staff | system
    sa.Column("author_id", sa.String(36)),
    sa.Column("author_name", sa.String(200)),
    sa.Column("vault_subject", sa.String(36), nullable=False),
    sa.Column("body_enc", sa.LargeBinary, nullable=False),
    # RFC 5322 Message-ID of an email in or out: the key for In-Reply-To threading, once
    # across all cases (service_keys, "email:<Message-ID>").
    sa.Column("email_message_id", sa.String(255), index=True),
    # What messaging did with a reply: queued:<id> | suppressed | unavailable.
    sa.Column("delivery", sa.String(80), index=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_service_messages_case_created", "case_id", "created_at"),
    sa.PrimaryKeyConstraint("case_id", "id"),
)

service_activity = sa.Table(
    "service_activity",
    metadata,
    sa.Column("id", sa.String(36), nullable=False),
    sa.Column("case_id", sa.String(36), nullable=False, index=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("detail", Json, nullable=False),
    sa.PrimaryKeyConstraint("case_id", "id"),
)

# Mail that could not be threaded safely (too large, unparseable): kept whole for review.
service_inbound_review = sa.Table(
    "service_inbound_review",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    # Sealed under this row's own vault subject (its id): erasable like any PII.
    sa.Column("raw_enc", sa.LargeBinary, nullable=False),
    sa.Column("mail_from_index", sa.String(32), index=True),
    sa.Column("resolved_at", UtcDateTime),
    sa.Column("case_id", sa.String(36)),
)

service_macros = sa.Table(
    "service_macros",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("key", sa.String(64), nullable=False),
    sa.Column("locale", sa.String(16), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("category", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("key", "locale"),
)

service_feedback = sa.Table(
    "service_feedback",
    metadata,
    sa.Column("id", sa.String(36), nullable=False),
    # SHA-256 of the link's 192-bit random token (never stored): looked up alone.
    sa.Column("token_hash", sa.String(64), nullable=False, index=True),
    sa.Column("customer_id", sa.String(36), nullable=False, index=True),
    sa.Column("touchpoint", sa.String(32), nullable=False),  # case_solved | delivery | orders
    sa.Column("kind", sa.String(8), nullable=False),         # csat | nps | review
    # Asked once per cause, across customers: service_keys ("feedback-cause:<cause>").
    sa.Column("cause", sa.String(120), nullable=False),
    sa.Column("case_id", sa.String(36)),
    sa.Column("order_id", sa.String(36)),
    sa.Column("sent_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("delivery", sa.String(80)),
    sa.Column("answered_at", UtcDateTime),
    sa.Column("score", sa.SmallInteger),
    sa.Column("comment_enc", sa.LargeBinary),
    sa.Column("follow_up_case_id", sa.String(36)),
    sa.Index("ix_service_feedback_answered", "kind", "answered_at"),
    sa.PrimaryKeyConstraint("customer_id", "id"),
    sa.UniqueConstraint("customer_id", "token_hash"),
)

# Orders seen per customer, to ask for NPS every N orders (fed by commerce.order_placed).
service_order_counts = sa.Table(
    "service_order_counts",
    metadata,
    sa.Column("customer_id", sa.String(36), primary_key=True),
    sa.Column("orders", sa.Integer, nullable=False),
)
service_order_seen = sa.Table(
    "service_order_seen",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
)

# What must be unique across all cases and customers, one row per key: "case-token:T",
# "case-cause:C", "feedback-cause:C", "email:<Message-ID>" → the case, feedback or message.
service_keys = sa.Table(
    "service_keys",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("ref_id", sa.String(36), nullable=False),
)

TABLES = ["service_cases", "service_messages", "service_activity", "service_inbound_review",
          "service_macros", "service_feedback", "service_order_counts", "service_order_seen",
          "service_keys"]

by_key("case", "a case may have no customer (an unverified contact writing in) and moves "
       "to one when the contact is verified: cases, their messages and activity are "
       "distributed by case id; a customer's cases are found by the index on customer_id",
       id=service_cases, case_id=(service_messages, "case_id"),
       case_id_activity=(service_activity, "case_id"))
by_key("service_inbound_review", "mail that could not be threaded belongs to no case or "
       "customer yet; it is found by its sender's address index", id=service_inbound_review)
by_key("service_key", "tokens, causes and Message-IDs are unique across all cases and "
       "customers (one automatic case per cause, one ask per cause, one message per mail)",
       key=service_keys)
by_key("service_order", "an order is counted once for NPS, whichever customer record it "
       "ends up on", order_id=service_order_seen)
by_customer(service_feedback, service_order_counts)
reference("reply templates: a few hundred rows written by staff, read by every agent",
          service_macros)
