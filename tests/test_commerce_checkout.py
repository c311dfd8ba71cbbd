"""Catalog, carts and checkout over HTTP: idempotency keys, price and stock problems, payments."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from kunde.app import create_app
from kunde.commerce.gateway import PaymentGateway
from kunde.commerce.tables import orders, promotions, stock, variants
from kunde.core.clock import FrozenClock
from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.store.consumers import ConsumerRunner

Client = httpx.AsyncClient


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    """The app in the test's own event loop (httpx's ASGI transport, no lifespan).

    Litestar's test client serves from another thread's loop, where asyncpg connections
    of the test's kernel cannot be used; this runs the same app on the same loop.
    """
    app = create_app(kernel=kernel)
    app.state.kernel = kernel
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver.local") as c:
        yield c


CATALOG = [
    {"code": "TEE", "title": "Organic tee", "brand": "Kunde", "category": "Men/Shirts",
     "image_urls": ["https://img.example/tee.jpg"],
     "variants": [{"sku": "TEE-M", "price_minor": 1999, "currency": "EUR",
                   "attributes": {"size": "M"}, "stock": {"wh-1": 5, "store-1": 2}},
                  {"sku": "TEE-L", "price_minor": 1999, "currency": "EUR",
                   "attributes": {"size": "L"}, "stock": {"wh-1": 1}}]},
    {"code": "CAP", "title": "Cap", "category": "Accessories",
     "variants": [{"sku": "CAP-1", "price_minor": 1500, "currency": "EUR",
                   "stock": {"wh-1": 10}}]},
]


@pytest.fixture
async def shop(client: Client, admin_headers: dict[str, str]) -> dict[str, str]:
    r = await client.post("/v1/catalog/locations", headers=admin_headers, json=[
        {"code": "wh-1", "name": "Central warehouse"},
        {"code": "store-1", "name": "Berlin Mitte", "kind": "store"}])
    assert r.status_code == 200, r.text
    r = await client.post("/v1/catalog/products", headers=admin_headers, json=CATALOG)
    assert r.status_code == 200 and r.json()["variants"] == 3, r.text
    return admin_headers


async def new_cart(client: Client, h: dict[str, str], **lines: int) -> str:
    r = await client.post("/v1/carts", headers=h, json={"currency": "EUR",
                                                         "email": "ann@example.com"})
    assert r.status_code == 201, r.text
    cart_id = str(r.json()["cart_id"])
    for sku, qty in lines.items():
        r = await client.post(f"/v1/carts/{cart_id}/lines", headers=h,
                              json={"sku": sku.replace("_", "-"), "quantity": qty})
        assert r.status_code == 200, r.text
    return cart_id


async def free(kernel: Kernel, sku: str) -> int:
    async with kernel.db.read() as conn:
        v = (await conn.execute(sa.select(
            sa.func.sum(stock.c.on_hand - stock.c.reserved)).join(
            variants, variants.c.id == stock.c.variant_id).where(variants.c.sku == sku)
        )).scalar()
    return int(v or 0)


async def order_count(kernel: Kernel) -> int:
    async with kernel.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(orders)))
                   .scalar_one())


async def test_catalog_read(client: Client, shop: dict[str, str]) -> None:
    r = await client.get("/v1/catalog/products/TEE", headers=shop)
    body = r.json()
    assert body["category"] == "Men/Shirts" and body["brand"] == "Kunde"
    by_sku = {v["sku"]: v for v in body["variants"]}
    assert by_sku["TEE-M"]["available"] == {"wh-1": 5, "store-1": 2}
    assert by_sku["TEE-M"]["attributes"] == {"size": "M"}
    r = await client.get("/v1/catalog/products", params={"category": "Men"}, headers=shop)
    assert [p["code"] for p in r.json()] == ["TEE"]


async def test_checkout_replays_with_the_same_key(client: Client, shop: dict[str, str],
                                                  kernel: Kernel) -> None:
    cart_id = await new_cart(client, shop, TEE_M=2, CAP_1=1)
    cart = (await client.get(f"/v1/carts/{cart_id}", headers=shop)).json()
    assert cart["subtotal_minor"] == 5498 and cart["shipping_minor"] == 0  # free over 50
    assert await free(kernel, "TEE-M") == 5  # 7 on hand, 2 reserved

    h = {**shop, "Idempotency-Key": "chk-1"}
    body = {"payment_method": "test_approve", "expected_total_minor": 5498}
    r1 = await client.post(f"/v1/carts/{cart_id}/checkout", headers=h, json=body)
    assert r1.status_code == 201, r1.text
    order = r1.json()
    assert order["status"] == "paid" and order["payment"]["status"] == "captured"
    r2 = await client.post(f"/v1/carts/{cart_id}/checkout", headers=h, json=body)
    assert r2.status_code == 201 and r2.content == r1.content
    assert r2.headers["idempotent-replayed"] == "true"
    r3 = await client.post(f"/v1/carts/{cart_id}/checkout", headers=h,
                           json={"payment_method": "test_decline"})
    assert r3.status_code == 422 and r3.json()["code"] == "idempotency.key_reused"
    r4 = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop, json=body)
    assert r4.status_code == 409 and r4.json()["code"] == "commerce.cart_not_open"

    assert await order_count(kernel) == 1
    assert await free(kernel, "TEE-M") == 5  # stock left the shelves; nothing reserved
    got = (await client.get(f"/v1/orders/{order['order_id']}", headers=shop)).json()
    assert got["captured_minor"] == 5498 and len(got["payments"]) == 1
    assert got["customer_id"] == order["customer_id"] is not None


async def test_changed_price_fails_clearly_without_an_order(
        client: Client, shop: dict[str, str], kernel: Kernel) -> None:
    cart_id = await new_cart(client, shop, CAP_1=1)
    async with kernel.db.transaction() as uow:
        await uow.execute(variants.update().where(variants.c.sku == "CAP-1")
                          .values(price_minor=1700))
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop, json={})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "commerce.price_changed"
    assert problem["lines"] == [{"sku": "CAP-1", "was_minor": 1500, "now_minor": 1700}]
    assert await order_count(kernel) == 0
    cart = (await client.get(f"/v1/carts/{cart_id}", headers=shop)).json()
    assert cart["lines"][0]["unit_price_minor"] == 1700 and cart["status"] == "open"
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop,
                          json={"expected_total_minor": cart["total_minor"]})
    assert r.status_code == 201, r.text


async def test_out_of_stock_and_reservation_expiry(client: Client, shop: dict[str, str],
                                                   kernel: Kernel) -> None:
    from kunde.commerce.service_carts import CartService

    clock = FrozenClock(datetime.now(UTC))
    kernel.clock = clock
    first = await new_cart(client, shop, TEE_L=1)
    second = await new_cart(client, shop)
    r = await client.post(f"/v1/carts/{second}/lines", headers=shop,
                          json={"sku": "TEE-L", "quantity": 1})
    assert r.status_code == 409 and r.json()["code"] == "commerce.out_of_stock"

    clock.advance(timedelta(minutes=16))
    assert await kernel.service(CartService).release_expired() == 1
    r = await client.post(f"/v1/carts/{second}/lines", headers=shop,
                          json={"sku": "TEE-L", "quantity": 1})
    assert r.status_code == 200
    r = await client.post(f"/v1/carts/{first}/checkout", headers=shop, json={})
    assert r.status_code == 409
    assert r.json()["code"] == "commerce.out_of_stock"
    assert r.json()["lines"] == [{"sku": "TEE-L", "requested": 1, "available": 0}]
    assert await order_count(kernel) == 0
    r = await client.post(f"/v1/carts/{second}/checkout", headers=shop, json={})
    assert r.status_code == 201


async def test_declined_payment_leaves_a_usable_cart(client: Client, shop: dict[str, str],
                                                     kernel: Kernel) -> None:
    cart_id = await new_cart(client, shop, CAP_1=2)
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop,
                          json={"payment_method": "test_decline"})
    assert r.status_code == 402 and r.json()["code"] == "commerce.payment_declined"
    assert await order_count(kernel) == 0
    cart = (await client.get(f"/v1/carts/{cart_id}", headers=shop)).json()
    assert cart["status"] == "open" and cart["last_decline"] == "card_declined"
    assert await free(kernel, "CAP-1") == 8  # still held for the customer
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop,
                          json={"payment_method": "test_approve"})
    assert r.status_code == 201 and r.json()["status"] == "paid"
    assert await free(kernel, "CAP-1") == 8
    r = await client.post(f"/v1/orders/{r.json()['order_id']}/cancel", headers=shop,
                          json={"reason": "changed my mind"})
    assert r.json()["status"] == "cancelled"
    assert await free(kernel, "CAP-1") == 10  # back on the shelf


async def test_async_payment_confirmed_by_signed_webhook(
        client: Client, shop: dict[str, str], kernel: Kernel) -> None:
    cart_id = await new_cart(client, shop, CAP_1=1)
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop,
                          json={"payment_method": "test_async"})
    order = r.json()
    assert r.status_code == 201 and order["status"] == "placed"
    psp = kernel.service(PaymentGateway).test
    ref = order["payment"]["provider_ref"]

    body, headers = psp.webhook(ref, "captured", message_id="m1")
    signature = headers["Kunde-Signature"]
    flipped = "1" if signature[-1] == "0" else "0"  # always a different signature
    bad = {**headers, "Kunde-Signature": signature[:-1] + flipped}
    r = await client.post("/webhooks/payments/test", content=body, headers=bad)
    assert r.status_code == 400 and r.json()["code"] == "commerce.webhook_rejected"
    old_body, old = psp.webhook(ref, "captured", message_id="m1",
                                timestamp=int(time.time()) - 600)
    r = await client.post("/webhooks/payments/test", content=old_body, headers=old)
    assert r.status_code == 400

    r = await client.post("/webhooks/payments/test", content=body, headers=headers)
    assert r.status_code == 201 and r.json()["applied"] is True
    r = await client.post("/webhooks/payments/test", content=body, headers=headers)
    assert r.json()["applied"] is False
    got = (await client.get(f"/v1/orders/{order['order_id']}", headers=shop)).json()
    assert got["status"] == "paid" and got["payments"][0]["status"] == "captured"


async def test_promotion_and_voucher(client: Client, shop: dict[str, str],
                                     kernel: Kernel) -> None:
    from kunde.commerce.service_vouchers import VoucherService

    async with kernel.db.transaction() as uow:
        await uow.execute(promotions.insert().values(
            id=new_id(), name="caps10", kind="percent", value=10, currency="EUR",
            category_prefix="Accessories"))
        code = await kernel.service(VoucherService).issue(
            uow, customer_id=None, kind="amount", value=500, currency="EUR",
            source="test", source_ref="v1", expires_at=None)
    cart_id = await new_cart(client, shop, CAP_1=2, TEE_M=1)
    r = await client.post(f"/v1/carts/{cart_id}", headers=shop,
                          json={"voucher_code": code, "shipping_method": "express"})
    cart = r.json()
    assert cart["discount_minor"] == 300 + 500 and cart["shipping_minor"] == 995
    assert cart["total_minor"] == 4999 - 800 + 995
    assert cart["applied"] == ["promotion:caps10", f"voucher:{code}"]
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop,
                          json={"expected_total_minor": cart["total_minor"]})
    assert r.status_code == 201, r.text
    other = await new_cart(client, shop, CAP_1=1)
    r = await client.post(f"/v1/carts/{other}", headers=shop, json={"voucher_code": code})
    assert r.status_code == 422 and r.json()["code"] == "commerce.voucher_invalid"


async def test_refund_over_http_needs_a_key_and_is_idempotent(
        client: Client, shop: dict[str, str], kernel: Kernel) -> None:
    cart_id = await new_cart(client, shop, CAP_1=1)
    order = (await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop,
                               json={})).json()
    url = f"/v1/orders/{order['order_id']}/refunds"
    r = await client.post(url, headers=shop, json={"amount_minor": 500, "reason": "x"})
    assert r.status_code == 422 and r.json()["code"] == "commerce.idempotency_required"
    h = {**shop, "Idempotency-Key": "rf-1"}
    r1 = await client.post(url, headers=h, json={"amount_minor": 500, "reason": "damaged"})
    r2 = await client.post(url, headers=h, json={"amount_minor": 500, "reason": "damaged"})
    assert r1.status_code == r2.status_code == 201 and r1.content == r2.content
    r = await client.post(url, headers={**shop, "Idempotency-Key": "rf-2"},
                          json={"amount_minor": 99999, "reason": "too much"})
    assert r.status_code == 409 and r.json()["code"] == "commerce.refund_exceeds_capture"
    assert sum(kernel.service(PaymentGateway).test.refunds_paid.values()) == 500


async def test_external_orders_by_import_and_by_interaction(
        client: Client, shop: dict[str, str], kernel: Kernel) -> None:
    from kunde.commerce.external import consumers
    from kunde.core.events import Event

    batch = [{"external_id": "A-1", "source": "oldshop", "currency": "EUR",
              "email": "bo@example.com",
              "lines": [{"sku": "TEE-M", "quantity": 1, "unit_price_minor": 1800}]}]
    r = await client.post("/v1/orders/import", headers=shop, json=batch)
    assert r.json() == {"created": 1, "already_known": 0}
    r = await client.post("/v1/orders/import", headers=shop, json=batch)
    assert r.json() == {"created": 0, "already_known": 1}

    customer = new_id()
    async with kernel.db.transaction() as uow:
        for _ in range(2):  # delivered twice: recorded once
            uow.emit(Event.new("interaction.recorded", {
                "kind": "order_completed", "order_id": "web-77", "currency": "EUR",
                "revenue_minor": 2500, "channel": "web",
                "products": [{"sku": "CAP-1", "quantity": 2, "price_minor": 1500}]},
                subject_id=customer, source="web"))
    await ConsumerRunner(kernel.db, kernel.log, consumers(kernel),
                         lambda: frozenset(range(kernel.log.partitions))).drain()
    r = await client.get("/v1/orders", params={"external": "true"}, headers=shop)
    listed = r.json()
    assert len(listed) == 2 and all(o["external"] and o["status"] == "paid" for o in listed)
    mine = next(o for o in listed if o["customer_id"] == customer)
    assert mine["discount_minor"] == 500 and mine["total_minor"] == 2500
    detail = (await client.get(f"/v1/orders/{mine['order_id']}", headers=shop)).json()
    assert detail["lines"][0]["title"] == "Cap" and detail["lines"][0]["category"]

    refund = Event.new("interaction.recorded", {
        "kind": "order_refunded", "order_id": "web-77", "revenue_minor": 1000,
        "currency": "EUR", "channel": "web"}, subject_id=customer, source="web")
    async with kernel.db.transaction() as uow:  # the shop refunds part of it
        uow.emit(refund)
    await ConsumerRunner(kernel.db, kernel.log, consumers(kernel),
                         lambda: frozenset(range(kernel.log.partitions))).drain()
    async with kernel.db.transaction() as uow:  # delivered again (at least once)
        await consumers(kernel)[0].handle(uow, [refund])
    detail = (await client.get(f"/v1/orders/{mine['order_id']}", headers=shop)).json()
    assert detail["refunded_minor"] == 1000 and detail["status"] == "partially_refunded"


async def test_same_key_at_once_runs_the_request_once(client: Client, shop: dict[str, str],
                                                      kernel: Kernel) -> None:
    cart_id = await new_cart(client, shop, CAP_1=1)
    h = {**shop, "Idempotency-Key": "twins"}
    answers = await asyncio.gather(*[
        client.post(f"/v1/carts/{cart_id}/checkout", headers=h, json={}) for _ in range(4)])
    codes = sorted(r.status_code for r in answers)
    assert codes.count(201) >= 1 and set(codes) <= {201, 409}
    assert all(r.json()["code"] == "idempotency.in_progress"
               for r in answers if r.status_code == 409)
    assert len({r.json()["order_id"] for r in answers if r.status_code == 201}) == 1
    assert await order_count(kernel) == 1


async def test_interrupted_checkout_resumes_without_charging_twice(
        client: Client, shop: dict[str, str], kernel: Kernel) -> None:
    from kunde.commerce import checkout as flow
    from kunde.commerce.payments import ChargeRequest

    clock = FrozenClock(datetime.now(UTC))
    kernel.clock = clock
    cart_id = await new_cart(client, shop, CAP_1=1)
    # The process charged the card, then died before writing the order.
    prepared = await flow._prepare(kernel, cart_id, None, None, "test")
    psp = kernel.service(PaymentGateway).test
    await psp.charge(ChargeRequest(prepared["payment_id"], prepared["total"], "EUR",
                                   "test_approve"))
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop, json={})
    assert r.status_code == 409 and r.json()["code"] == "commerce.cart_not_open"
    clock.advance(timedelta(minutes=3))
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop, json={})
    assert r.status_code == 201, r.text
    assert r.json()["payment"]["payment_id"] == prepared["payment_id"]
    assert r.json()["status"] == "paid" and len(psp.charges) == 1
    assert await order_count(kernel) == 1


async def test_provider_timeout_then_retry_charges_once(client: Client, shop: dict[str, str],
                                                        kernel: Kernel) -> None:
    cart_id = await new_cart(client, shop, CAP_1=1)
    body = {"payment_method": "test_timeout_once"}
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop, json=body)
    assert r.status_code == 503 and r.json()["code"] == "commerce.provider_unavailable"
    assert await order_count(kernel) == 0
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop, json=body)
    assert r.status_code == 201 and r.json()["status"] == "paid"
    assert len(kernel.service(PaymentGateway).test.charges) == 1
    r = await client.post(f"/v1/carts/{cart_id}/checkout", headers=shop,
                          json={"provider": "nowhere"})
    assert r.status_code == 404 and r.json()["code"] == "commerce.unknown_provider"


async def test_an_empty_catalog_upload_is_refused(client: Client,
                                                  admin_headers: dict[str, str]) -> None:
    r = await client.post("/v1/catalog/products", headers=admin_headers, json=[])
    assert r.status_code == 422
    assert r.json()["code"] == "commerce.invalid_import"


async def test_checkout_keeps_and_replays_refusals_under_a_key(
        client: Client, shop: dict[str, str], kernel: Kernel) -> None:
    # Checkout takes its key inside its own transactions; refusals are kept all the same.
    declined = await new_cart(client, shop, CAP_1=1)
    h = {**shop, "Idempotency-Key": "decl-1"}
    body = {"payment_method": "test_decline"}
    r1 = await client.post(f"/v1/carts/{declined}/checkout", headers=h, json=body)
    assert r1.status_code == 402
    r2 = await client.post(f"/v1/carts/{declined}/checkout", headers=h, json=body)
    assert r2.status_code == 402 and r2.content == r1.content
    assert r2.headers["idempotent-replayed"] == "true"
    # Refused before anything was written (the empty cart's transaction rolled back).
    r = await client.post("/v1/carts", headers=shop, json={"currency": "EUR"})
    empty = r.json()["cart_id"]
    h = {**shop, "Idempotency-Key": "empty-1"}
    r1 = await client.post(f"/v1/carts/{empty}/checkout", headers=h, json={})
    assert r1.status_code == 422 and r1.json()["code"] == "commerce.empty_cart"
    await client.post(f"/v1/carts/{empty}/lines", headers=shop,
                      json={"sku": "CAP-1", "quantity": 1})
    r2 = await client.post(f"/v1/carts/{empty}/checkout", headers=h, json={})
    assert r2.content == r1.content and r2.headers["idempotent-replayed"] == "true"
    r3 = await client.post(f"/v1/carts/{empty}/checkout",
                           headers={**shop, "Idempotency-Key": "empty-2"}, json={})
    assert r3.status_code == 201
    assert await order_count(kernel) == 1
