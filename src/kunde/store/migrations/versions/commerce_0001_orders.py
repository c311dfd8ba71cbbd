"""commerce: catalog, stock, carts, orders, payments, refunds, vouchers, idempotency keys.

Revision ID: commerce_0001
"""

from kunde.store.migrate import create_tables

revision = "commerce_0001"
down_revision = None
branch_labels = ("commerce",)
depends_on = "core_0001"

TABLES = [
    "commerce_products", "commerce_variants", "commerce_locations", "commerce_stock",
    "commerce_promotions", "commerce_vouchers", "commerce_carts", "commerce_cart_lines",
    "commerce_reservations", "commerce_orders", "commerce_order_lines",
    "commerce_order_history", "commerce_payments", "commerce_refunds", "idempotency_keys",
]


def upgrade() -> None:
    create_tables(TABLES)


def downgrade() -> None:
    raise RuntimeError("Kunde migrations are forward-only; restore a backup instead")
