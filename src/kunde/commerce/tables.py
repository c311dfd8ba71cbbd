"""Tables of the commerce feature: catalog, stock, carts, orders, payments, vouchers, keys."""

from __future__ import annotations

import sqlalchemy as sa

from kunde.store.distribution import by_key, reference
from kunde.store.tables import metadata
from kunde.store.types import Json, UtcDateTime

Money = sa.BigInteger

# -- catalog --------------------------------------------------------------------------
products = sa.Table(
    "commerce_products",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # The retailer's own product code (style number); variants carry the SKUs.
    sa.Column("code", sa.String(64), nullable=False, unique=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("brand", sa.String(120)),
    # Slash-separated path, e.g. "Women/Shoes/Sneakers".
    sa.Column("category", sa.String(300), nullable=False, server_default=""),
    sa.Column("description", sa.Text),
    sa.Column("attributes", Json, nullable=False),
    sa.Column("image_urls", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Index("ix_commerce_products_category", "category"),
)

variants = sa.Table(
    "commerce_variants",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("product_id", sa.String(36), sa.ForeignKey("commerce_products.id"),
              nullable=False, index=True),
    sa.Column("sku", sa.String(64), nullable=False, unique=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("attributes", Json, nullable=False),
    sa.Column("image_urls", Json, nullable=False),
    sa.Column("price_minor", Money, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

locations = sa.Table(
    "commerce_locations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("code", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # warehouse | store
    sa.Column("country", sa.String(2), nullable=False, server_default="DE"),
)

stock = sa.Table(
    "commerce_stock",
    metadata,
    sa.Column("variant_id", sa.String(36), sa.ForeignKey("commerce_variants.id"),
              primary_key=True),
    sa.Column("location_id", sa.String(36), sa.ForeignKey("commerce_locations.id"),
              primary_key=True),
    # Changed only by atomic `SET x = x + :d WHERE …` updates, never read-decide-write.
    sa.Column("on_hand", sa.Integer, nullable=False),
    sa.Column("reserved", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reservable"),
)

# -- promotions and vouchers --------------------------------------------------------------
promotions = sa.Table(
    "commerce_promotions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(16), nullable=False),  # percent | amount | free_shipping
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("min_subtotal_minor", Money, nullable=False, server_default="0"),
    sa.Column("category_prefix", sa.String(300)),
    sa.Column("starts_at", UtcDateTime),
    sa.Column("ends_at", UtcDateTime),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
)

vouchers = sa.Table(
    "commerce_vouchers",
    metadata,
    sa.Column("code", sa.String(40), primary_key=True),
    sa.Column("customer_id", sa.String(36), index=True),
    sa.Column("kind", sa.String(16), nullable=False),  # amount | percent | free_shipping
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("source_ref", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime),
    sa.Column("redeemed_at", UtcDateTime),
    sa.Column("redeemed_order_id", sa.String(36)),
)

# One voucher per cause: a retried reward or refund never mints a second one. Kept in a
# table of its own, keyed by the cause, written in the voucher's transaction.
voucher_causes = sa.Table(
    "commerce_voucher_causes",
    metadata,
    sa.Column("source", sa.String(40), primary_key=True),
    sa.Column("source_ref", sa.String(200), primary_key=True),
    sa.Column("code", sa.String(40), nullable=False),
)

# -- carts --------------------------------------------------------------------------------
carts = sa.Table(
    "commerce_carts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("customer_id", sa.String(36), index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # open | checking_out | ordered
    sa.Column("shipping_method", sa.String(32), nullable=False),
    sa.Column("voucher_code", sa.String(40)),
    sa.Column("ship_country", sa.String(2), nullable=False, server_default="DE"),
    # Sealed under the customer's key (vault); unreadable after erasure.
    sa.Column("address_enc", sa.LargeBinary),
    sa.Column("last_decline", sa.String(200)),
    sa.Column("order_id", sa.String(36)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

cart_lines = sa.Table(
    "commerce_cart_lines",
    metadata,
    sa.Column("cart_id", sa.String(36), sa.ForeignKey("commerce_carts.id"), primary_key=True),
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("variant_id", sa.String(36), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    # The price the customer was shown; checkout refuses if the catalog price moved.
    sa.Column("unit_price_minor", Money, nullable=False),
    sa.Column("added_at", UtcDateTime, nullable=False),
)

reservations = sa.Table(
    "commerce_reservations",
    metadata,
    sa.Column("cart_id", sa.String(36), primary_key=True),
    sa.Column("variant_id", sa.String(36), primary_key=True),
    sa.Column("location_id", sa.String(36), primary_key=True),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

# -- orders -------------------------------------------------------------------------------
orders = sa.Table(
    "commerce_orders",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # Unique: see order_keys.
    sa.Column("number", sa.String(32), nullable=False, index=True),
    sa.Column("customer_id", sa.String(36), index=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("external", sa.Boolean, nullable=False, server_default=sa.false()),
    # For external orders: "<source>:<their order id>", unique (order_keys) so re-imports
    # are no-ops.
    sa.Column("external_ref", sa.String(200)),
    # One order per cart (order_keys).
    sa.Column("cart_id", sa.String(36)),
    sa.Column("status", sa.String(24), nullable=False, index=True),
    sa.Column("subtotal_minor", Money, nullable=False),
    sa.Column("discount_minor", Money, nullable=False),
    sa.Column("shipping_minor", Money, nullable=False),
    sa.Column("total_minor", Money, nullable=False),
    sa.Column("captured_minor", Money, nullable=False, server_default="0"),
    sa.Column("refunded_minor", Money, nullable=False, server_default="0"),
    sa.Column("shipping_method", sa.String(32), nullable=False),
    sa.Column("voucher_code", sa.String(40)),
    sa.Column("promised_date", sa.Date),
    sa.Column("ship_country", sa.String(2)),
    sa.Column("address_enc", sa.LargeBinary),
    sa.Column("placed_at", UtcDateTime, nullable=False, index=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # Optimistic concurrency: every state change is `… WHERE version = :seen`.
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    # Erasure keeps orders (HGB §257, AO §147) pseudonymised until this date.
    sa.Column("pseudonymised_at", UtcDateTime),
    sa.Column("delete_after", UtcDateTime),
    # The full domain state (fulfilments, returns, refunds applied), see models.Order.
    sa.Column("state", Json, nullable=False),
)

# What must be unique across all orders, each (kind, key) naming one order:
# "number" (the order number), "external_ref" (re-imports are no-ops), "cart" (one order
# per cart). Written in the order's transaction; orders are distributed by their id.
order_keys = sa.Table(
    "commerce_order_keys",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("order_id", sa.String(36), nullable=False),
)

order_lines = sa.Table(
    "commerce_order_lines",
    metadata,
    sa.Column("order_id", sa.String(36), sa.ForeignKey("commerce_orders.id"),
              primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("product_id", sa.String(36)),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("category", sa.String(300), nullable=False, server_default=""),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price_minor", Money, nullable=False),
    sa.Column("total_minor", Money, nullable=False),
)

order_history = sa.Table(
    "commerce_order_history",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("from_status", sa.String(24)),
    sa.Column("to_status", sa.String(24), nullable=False),
    sa.Column("cause", sa.String(60), nullable=False),
    sa.Column("cause_ref", sa.String(200)),
)

payments = sa.Table(
    "commerce_payments",
    metadata,
    # Checkout chooses the order's id when it starts the payment, before the order row
    # exists; a declined attempt keeps an id no order took.
    sa.Column("order_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("cart_id", sa.String(36), index=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("provider_ref", sa.String(200), index=True),
    # started | pending | captured | declined | failed
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("decline_reason", sa.String(200)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

refunds = sa.Table(
    "commerce_refunds",
    metadata,
    sa.Column("order_id", sa.String(36), primary_key=True),
    # derived_id(order_id, idempotency_key): a retried refund finds its first attempt.
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("idempotency_key", sa.String(200), nullable=False),
    sa.Column("amount_minor", Money, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),  # original | store_credit
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("return_id", sa.String(36)),
    sa.Column("lines", Json),
    sa.Column("status", sa.String(16), nullable=False),  # pending | succeeded | failed
    sa.Column("provider_ref", sa.String(200)),
    sa.Column("voucher_code", sa.String(40)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("completed_at", UtcDateTime),
    sa.UniqueConstraint("order_id", "idempotency_key"),
)

# -- idempotency keys (reusable by every feature, see commerce/idempotency.py) ----------
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(120), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("response", sa.LargeBinary),
    sa.Column("locked_until", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False, index=True),
)

TABLES = [
    "commerce_products", "commerce_variants", "commerce_locations", "commerce_stock",
    "commerce_promotions", "commerce_vouchers", "commerce_voucher_causes", "commerce_carts",
    "commerce_cart_lines", "commerce_reservations", "commerce_orders", "commerce_order_keys",
    "commerce_order_lines", "commerce_order_history", "commerce_payments", "commerce_refunds",
    "idempotency_keys",
]

# -- distribution (Citus), see store/distribution.py and docs/commerce.md -----------------
reference(
    "The catalogue and its locations and promotions: small, written by imports and the "
    "console, read by every cart, order and recommendation on any node.",
    products, variants, locations, promotions)
by_key(
    "stock",
    "Stock is written on every cart change and checkout (reserve, release, take); as a "
    "reference table each of those writes would go to every node, so it is distributed "
    "by variant (one variant's rows on one shard) and joins the reference catalogue.",
    variant_id=stock)
by_key(
    "cart",
    "Guest carts have no customer (customer_id is nullable and set late): a cart, its "
    "lines and reservations stay together by cart id; a customer's carts are found "
    "through the customer_id index.",
    id=carts, cart_id=cart_lines, reservation_cart_id=(reservations, "cart_id"))
by_key(
    "order",
    "Guest orders have no customer, and erasure keeps orders pseudonymised: an order, its "
    "lines, history, payments and refunds (and fulfilment's shipments and returns) stay "
    "together by order id. The per-customer order view is profiles' profile_orders, "
    "distributed by customer.",
    id=orders, order_id=order_lines, history_order_id=(order_history, "order_id"),
    payment_order_id=(payments, "order_id"), refund_order_id=(refunds, "order_id"))
by_key(
    "order_key",
    "Order numbers, external references and cart ids are unique across all orders, so "
    "the guard rows are distributed by the key itself, not by the order they name.",
    key=order_keys)
by_key(
    "voucher",
    "A voucher is redeemed by its code at checkout, also by guests; many have no customer "
    "(customer_id nullable), so vouchers are distributed by code.",
    code=vouchers)
by_key(
    "voucher_cause",
    "One voucher per cause across all customers: the guard is distributed by the cause.",
    source_ref=voucher_causes)
by_key(
    "idempotency",
    "An idempotency key is used once per scope, whoever calls; distributed by the key.",
    key=idempotency_keys)

