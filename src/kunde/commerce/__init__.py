"""Commerce: catalog, carts, checkout, payments port, orders, vouchers, idempotency keys."""
