"""Console order pages, portal "My orders", demo data, GDPR export and erasure of orders."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from kunde.app import create_app
from kunde.commerce import demo, privacy
from kunde.commerce.service_orders import OrderService
from kunde.commerce.tables import carts, orders
from kunde.kernel import Kernel


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the test's own event loop (see test_commerce_checkout.client)."""
    app = create_app(kernel=kernel)
    app.state.kernel = kernel
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://testserver.local") as c:
        yield c


async def test_demo_pages_export_and_erase(kernel: Kernel, client: httpx.AsyncClient,
                                           admin_headers: dict[str, str]) -> None:
    await demo.load(kernel)
    await demo.load(kernel)  # idempotent
    svc = kernel.service(OrderService)
    everything = await svc.search(limit=500)
    statuses = {o["status"] for o in everything}
    assert {"placed", "paid", "cancelled", "partially_refunded", "refunded"} <= statuses
    assert len(everything) == 14 and sum(o["external"] for o in everything) == 2

    html = {**admin_headers, "Accept": "text/html"}
    r = await client.get("/console/orders", params={"status": "refunded"}, headers=html)
    assert r.status_code == 200 and "Orders" in r.text
    refunded = next(o for o in everything if o["status"] == "refunded")
    assert refunded["number"] in r.text
    r = await client.get(f"/console/orders/{refunded['order_id']}", headers=html)
    assert "Payments" in r.text and "Status history" in r.text and "captured" in r.text

    external = next(o for o in everything if o["external"])
    r = await client.get(f"/console/orders/{external['order_id']}", headers=html)
    assert "external order" in r.text and "Paid in the external shop" in r.text
    r = await client.get("/console/orders", params={"source": "external"}, headers=html)
    assert external["number"] in r.text and refunded["number"] not in r.text

    mine = refunded["customer_id"]
    token = kernel.access.issue_customer_token(mine)
    portal = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
    r = await client.get("/portal/orders", headers=portal)
    assert r.status_code == 200 and refunded["number"] in r.text
    other = next(o for o in everything if o["customer_id"] not in (mine, None))
    assert other["number"] not in r.text
    r = await client.get(f"/portal/orders/{other['order_id']}", headers=portal)
    assert r.status_code == 404
    r = await client.get(f"/v1/customers/{other['customer_id']}/orders", headers=portal)
    assert r.status_code == 403

    exported = await privacy.export(kernel, [mine])
    assert {o["order_id"] for o in exported["orders"]} >= {refunded["order_id"]}
    async with kernel.db.transaction() as uow:
        counts = await privacy.erase(kernel, uow, [mine])
    assert counts["orders_pseudonymised"] == len(exported["orders"])
    async with kernel.db.read() as conn:
        row = (await conn.execute(sa.select(orders).where(
            orders.c.id == refunded["order_id"]))).one()
        left = (await conn.execute(sa.select(sa.func.count()).select_from(carts).where(
            carts.c.customer_id == mine))).scalar()
    assert row.pseudonymised_at is not None and row.address_enc is None
    assert (row.delete_after - row.placed_at).days >= 3652  # kept ten years, not deleted
    assert left == 0
