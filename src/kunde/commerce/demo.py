"""Demo data: a small fashion catalog, stock in a warehouse and two stores, and orders.

Orders go through the real checkout with the test provider, so every event a real
order emits is in the log. Left in every state commerce itself reaches — placed
(payment pending), paid, cancelled, partially refunded, refunded, external, and a
declined checkout — plus paid orders for fulfilment's demo to ship, deliver and
return (it finds them with ``OrderService.search(status="paid")``). Idempotent: a
second run finds the marker promotion and does nothing.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce.checkout import checkout
from kunde.commerce.errors import PaymentDeclined
from kunde.commerce.external import ExternalLineIn, ExternalOrderIn, import_orders
from kunde.commerce.service_carts import CartService
from kunde.commerce.service_catalog import CatalogService, LocationIn, ProductIn, VariantIn
from kunde.commerce.service_orders import OrderService
from kunde.commerce.tables import promotions
from kunde.core.ids import new_id

if TYPE_CHECKING:
    from kunde.kernel import Kernel

MARKER = "Winter sale: 10% off outerwear"
SIZES = ("S", "M", "L")
RANGE = [  # code, title, brand, category, price, colours
    ("KD-TEE", "Organic cotton tee", "Kunde Basics", "Women/Tops/T-shirts", 1999,
     ("white", "black")),
    ("KD-HOOD", "Heavyweight hoodie", "Nordlys", "Men/Tops/Hoodies", 5999, ("grey", "navy")),
    ("KD-JEAN", "Straight jeans", "Denimhaus", "Women/Bottoms/Jeans", 7999, ("indigo",)),
    ("KD-PARKA", "Insulated parka", "Nordlys", "Men/Outerwear/Parkas", 18999, ("olive", "black")),
    ("KD-RAIN", "Rain jacket", "Nordlys", "Women/Outerwear/Jackets", 12999, ("yellow",)),
    ("KD-SNEAK", "Canvas sneakers", "Stride", "Unisex/Shoes/Sneakers", 6999, ("white",)),
    ("KD-BOOT", "Leather boots", "Stride", "Women/Shoes/Boots", 15999, ("brown",)),
    ("KD-SCARF", "Merino scarf", "Kunde Basics", "Accessories/Scarves", 3499, ("red", "grey")),
    ("KD-CAP", "Wool cap", "Kunde Basics", "Accessories/Hats", 2499, ("navy",)),
    ("KD-SOCK", "Socks, 3 pairs", "Kunde Basics", "Accessories/Socks", 1299, ("mixed",)),
    ("KD-BAG", "Canvas tote", "Kunde Basics", "Accessories/Bags", 2999, ("natural",)),
    ("KD-SHIRT", "Oxford shirt", "Denimhaus", "Men/Tops/Shirts", 4999, ("blue", "white")),
]
CUSTOMERS = ["mia.schneider@example.com", "jonas.weber@example.com", "sofie.jensen@example.dk",
             "daan.devries@example.nl", "lena.fischer@example.de", "emil.larsen@example.dk"]


def catalog() -> list[ProductIn]:
    items = []
    for i, (code, title, brand, category, price, colours) in enumerate(RANGE):
        variants = [
            VariantIn(sku=f"{code}-{c[:3].upper()}-{s}", price_minor=price, currency="EUR",
                      title=f"{title}, {c}, {s}", attributes={"colour": c, "size": s},
                      image_urls=[f"https://images.example/{code.lower()}-{c}.jpg"],
                      stock={"wh-central": 20 + 7 * i % 30, "store-berlin": 3,
                             "store-hamburg": 0 if s == "L" else 2})
            for c in colours for s in SIZES]
        items.append(ProductIn(code=code, title=title, brand=brand, category=category,
                               description=f"{title} by {brand}.", variants=variants,
                               attributes={"material": "organic" if "Basics" in brand else
                                           "mixed"}))
    return items


async def load(kernel: Kernel) -> None:
    async with kernel.db.read() as conn:
        done = (await conn.execute(sa.select(promotions.c.id).where(
            promotions.c.name == MARKER))).first()
    if done is not None:
        return
    cat = kernel.service(CatalogService)
    await cat.upsert_locations([
        LocationIn("wh-central", "Central warehouse, Kassel"),
        LocationIn("store-berlin", "Store Berlin Mitte", kind="store"),
        LocationIn("store-hamburg", "Store Hamburg", kind="store", country="DE")])
    await cat.upsert_products(catalog())
    await _orders(kernel)
    async with kernel.db.transaction() as uow:
        await uow.execute(promotions.insert().values(
            id=new_id(), name=MARKER, kind="percent", value=10, currency="EUR",
            category_prefix="Men/Outerwear"))


async def _order(kernel: Kernel, email: str, skus: dict[str, int], *,
                 method: str = "test_approve", shipping: str = "standard") -> dict[str, Any]:
    carts = kernel.service(CartService)
    cart = await carts.create(currency="EUR", email=email)
    for sku, qty in skus.items():
        await carts.set_line(cart["cart_id"], sku, qty)
    if shipping != "standard":
        await carts.update(cart["cart_id"], shipping_method=shipping)
    return await checkout(kernel, cart["cart_id"], payment_method=method)


async def _orders(kernel: Kernel) -> None:
    svc = kernel.service(OrderService)
    mia, jonas, sofie, daan, lena, emil = CUSTOMERS
    # Paid and waiting for fulfilment (its demo ships, delivers and returns these).
    for email, skus in [(mia, {"KD-TEE-WHI-M": 2, "KD-SCARF-RED-M": 1}),
                        (jonas, {"KD-HOOD-GRE-L": 1}),
                        (sofie, {"KD-RAIN-YEL-S": 1, "KD-SOCK-MIX-M": 2}),
                        (daan, {"KD-SNEAK-WHI-M": 1}),
                        (lena, {"KD-BOOT-BRO-S": 1, "KD-BAG-NAT-M": 1}),
                        (emil, {"KD-SHIRT-BLU-M": 2}),
                        (mia, {"KD-JEAN-IND-S": 1})]:
        await _order(kernel, email, skus)
    await _order(kernel, jonas, {"KD-PARKA-OLI-M": 1}, shipping="express")
    await _order(kernel, sofie, {"KD-CAP-NAV-M": 1}, method="test_async")  # placed
    cancelled = await _order(kernel, daan, {"KD-PARKA-BLA-L": 1})
    async with kernel.db.transaction() as uow:
        await svc.cancel(uow, cancelled["order_id"], "customer changed their mind")
    await svc.refund(cancelled["order_id"], cancelled["total_minor"], reason="order cancelled",
                     method="original", idempotency_key="demo-cancel")
    goodwill = await _order(kernel, lena, {"KD-HOOD-NAV-M": 1})
    await svc.refund(goodwill["order_id"], 1000, reason="goodwill: late dispatch",
                     method="store_credit", idempotency_key="demo-goodwill")
    full = await _order(kernel, emil, {"KD-SCARF-GRE-S": 1})
    await svc.refund(full["order_id"], full["total_minor"], reason="price promise",
                     method="original", idempotency_key="demo-full")
    # A declined checkout: the cart stays open with its decline reason, as a real one would.
    with contextlib.suppress(PaymentDeclined):
        await _order(kernel, jonas, {"KD-BOOT-BRO-M": 1}, method="test_decline")
    await import_orders(kernel, [
        ExternalOrderIn(external_id="MP-100231", source="marketplace", currency="EUR",
                        email=mia, channel="web",
                        lines=[ExternalLineIn("KD-TEE-BLA-S", 1, 1899)]),
        ExternalOrderIn(external_id="POS-7781", source="pos", currency="EUR", email=daan,
                        channel="store", lines=[ExternalLineIn("KD-CAP-NAV-M", 2, 2499)])])
