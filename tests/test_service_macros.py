"""Macros: reply templates per locale with variables, suggested by the case's category and
filled in for the case — over the API and in the console's case view."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from conftest import AppClient, app_client
from kunde.commerce.service_orders import OrderService
from kunde.fulfilment.service import FulfilmentService
from kunde.kernel import Kernel
from kunde.profiles.service import ProfileService
from kunde.service import models
from kunde.service.macros import DEFAULT_MACROS, MacroService, macro_variables
from kunde.service.service import Actor, CaseService, NewCase
from test_service_cases import service_features
from test_service_workspace import key


@pytest.fixture
async def client(kernel: Kernel) -> AsyncIterator[AppClient]:
    async with app_client(kernel, features=service_features()) as c:
        yield c


async def delivery_case(kernel: Kernel, locale: str = "da-DK") -> tuple[str, str, str]:
    """A Danish customer's late-delivery case linked to a shipped order."""
    cid = await kernel.service(ProfileService).ensure_customer(
        {"email": "freja@example.dk"}, "web", traits={"first_name": "Freja", "locale": locale})
    orders = kernel.service(OrderService)
    async with kernel.db.transaction() as uow:
        order_id = await orders.place(
            uow, customer_id=cid, channel="web", currency="DKK",
            lines=[{"sku": "BOOT-43", "quantity": 1, "unit_price_minor": 89900}])
        await orders.capture(uow, order_id, "pay-1", 89900)
    order = await orders.get_order(order_id)
    ship = await kernel.service(FulfilmentService).create_shipment(
        order_id=order_id, carrier="kunde", service="standard", tracking_number="TRK9",
        lines={order["lines"][0]["line_id"]: 1})
    case_id = await kernel.service(CaseService).open_case(
        NewCase(channel="portal", subject="Hvor er min pakke?", customer_id=cid,
                category="delivery", shipment_id=ship["id"]),
        Actor("customer", cid, "customer"), body="Den er ikke kommet")
    return case_id, str(order["number"]), ship["id"]


async def test_case_macros_are_suggested_by_category_and_filled(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    case_id, number, _ship = await delivery_case(kernel)
    r = await client.get(f"/v1/service/cases/{case_id}/macros", headers=admin_headers)
    assert r.status_code == 200, r.text
    macros = r.json()
    # The case's category first, every macro once, in the customer's language.
    first = macros[0]
    assert (first["key"], first["category"], first["locale"]) == ("delay-apology", "delivery",
                                                                  "da")
    assert len({m["key"] for m in macros}) == len(macros) == len({k for k, *_ in DEFAULT_MACROS})
    assert {m["locale"] for m in macros} == {"da"}
    assert first["text"].startswith("Hej Freja,")
    assert "/track/" in first["text"] and "$" not in first["text"] and first["unfilled"] == []
    refund = next(m for m in macros if m["key"] == "refund-confirmed")
    assert number in refund["text"]  # the order of the case's shipment
    thanks = next(m for m in macros if m["key"] == "general-thanks")
    case = await kernel.service(CaseService).get_case(case_id)
    assert f"K-{case['token']}" in thanks["text"]

    # A role without the order and shipment panels gets those variables left to fill.
    agent = await key(kernel, "service:cases", "profiles:read")
    r = await client.get(f"/v1/service/cases/{case_id}/macros", headers=agent)
    first = r.json()[0]
    assert first["unfilled"] == ["tracking_url"] and "$tracking_url" in first["text"]
    r = await client.get(f"/v1/service/cases/{case_id}/macros",
                         headers=await key(kernel, "service:read"))
    assert r.status_code == 403


async def test_macros_are_saved_per_locale_and_checked(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    good = {"key": "size-swap", "locale": "nl", "category": "return", "title": "Ruilen",
            "body": "Hallo $first_name, we ruilen je bestelling $order_number graag om."}
    r = await client.put("/v1/service/macros", headers=admin_headers, json=good)
    assert r.status_code == 200, r.text
    r = await client.put("/v1/service/macros", headers=admin_headers,
                         json={**good, "locale": "en", "title": "Swap",
                               "body": "Hello $first_name, we swap order $order_number."})
    r = await client.get("/v1/service/macros?category=return&locale=nl-BE",
                         headers=admin_headers)
    suggested = r.json()
    assert [m["category"] for m in suggested[:2]] == ["return", "return"]
    assert next(m for m in suggested if m["key"] == "size-swap")["locale"] == "nl"
    for bad, word in (({"body": "Hi $first_nam"}, "$first_nam"),
                      ({"category": "weather"}, "category"),
                      ({"locale": "Dutch"}, "locale"), ({"key": "Has Space"}, "key"),
                      ({"body": "  "}, "body")):
        r = await client.put("/v1/service/macros", headers=admin_headers,
                             json={**good, **bad})
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "service.invalid_macro" and word in r.json()["detail"]
    r = await client.put("/v1/service/macros", json=good,
                         headers=await key(kernel, "service:cases", "service:write"))
    assert r.status_code == 403


async def test_console_case_view_fills_the_chosen_macro(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    case_id, _number, _ship = await delivery_case(kernel, locale="de-AT")
    macros = kernel.service(MacroService)
    suggested = await macros.suggest("delivery", "de-AT")
    chosen = suggested[0]
    assert (chosen["key"], chosen["locale"]) == ("delay-apology", "de")
    r = await client.get(f"/console/service/cases/{case_id}?macro={chosen['id']}",
                         headers=admin_headers)
    assert r.status_code == 200, r.text
    assert "Hallo Freja," in r.text and "/track/" in r.text and "$tracking_url" not in r.text
    assert 'id="macro-unfilled"' not in r.text
    r = await client.get("/console/service/macros", headers=admin_headers)
    assert r.status_code == 200 and 'id="macro-form"' in r.text


async def test_defaults_are_added_without_touching_edited_macros(kernel: Kernel) -> None:
    macros = kernel.service(MacroService)
    await macros.save("delay-apology", "en", "delivery", "Mine", "Hello $first_name, sorry.")
    await macros.ensure_defaults()
    await macros.ensure_defaults()
    rows = await macros.list_all()
    assert len(rows) == len(DEFAULT_MACROS)
    mine = next(m for m in rows if (m["key"], m["locale"]) == ("delay-apology", "en"))
    assert mine["title"] == "Mine"
    for key_, locale, category, title, body in DEFAULT_MACROS:
        assert models.macro_problem(key_, locale, category, title, body) is None


def test_macro_variables_come_only_from_visible_panels() -> None:
    case = {"token": "ABCD2345", "order_id": "o1", "shipment_id": None}
    panels = {"profile": {"status": "ok", "data": {"first_name": "Ada"}},
              "orders": {"status": "ok", "data": {"orders": [{"order_id": "o1",
                                                               "number": "K-1001"}]}},
              "shipments": {"status": "ok", "data": {"shipments": [
                  {"id": "s0", "order_id": "o0", "tracking_url": "https://x/track/0"},
                  {"id": "s1", "order_id": "o1", "tracking_url": "https://x/track/1"}]}}}
    assert macro_variables(case, panels, "Bo", "https://x/portal/service") == {
        "case_number": "K-ABCD2345", "agent_name": "Bo", "portal_url": "https://x/portal/service",
        "first_name": "Ada", "order_number": "K-1001", "tracking_url": "https://x/track/1"}
    hidden = {"profile": {"status": "not_permitted", "data": None}}
    assert set(macro_variables(case, hidden, "Bo", "u")) == {"case_number", "agent_name",
                                                             "portal_url"}


async def test_recategorising_a_case_changes_its_suggestions_and_queue(
        kernel: Kernel, client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    cid = await kernel.service(ProfileService).ensure_customer(
        {"email": "ole@example.com"}, "web", traits={"first_name": "Ole"})
    case_id = await kernel.service(CaseService).open_case(
        NewCase(channel="email", subject="Refund?", customer_id=cid),
        Actor("customer", cid, "customer"), body="Where is my money?")
    r = await client.get(f"/v1/service/cases/{case_id}/macros", headers=admin_headers)
    assert r.json()[0]["category"] == "general"
    r = await client.patch(f"/v1/service/cases/{case_id}", headers=admin_headers,
                           json={"category": "refund"})
    assert r.status_code == 200, r.text
    assert (r.json()["category"], r.json()["queue"]) == ("refund", "billing")
    r = await client.get(f"/v1/service/cases/{case_id}/macros", headers=admin_headers)
    assert r.json()[0]["key"] == "refund-confirmed"
    assert r.json()[0]["unfilled"] == ["order_number"]  # no order on the case
    # Routed by hand, a case stays in its queue when its category changes.
    await client.patch(f"/v1/service/cases/{case_id}", headers=admin_headers,
                       json={"queue": "vip"})
    r = await client.patch(f"/v1/service/cases/{case_id}", headers=admin_headers,
                           json={"category": "delivery"})
    assert (r.json()["category"], r.json()["queue"]) == ("delivery", "vip")
    r = await client.patch(f"/v1/service/cases/{case_id}", headers=admin_headers,
                           json={"category": "weather"})
    assert r.status_code == 422 and r.json()["code"] == "service.invalid_case"
