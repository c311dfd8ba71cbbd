"""Commerce API: catalog, carts, checkout, orders, refunds, external orders, payment webhooks.

Every mutating POST accepts ``Idempotency-Key`` (see `kunde.commerce.idempotency`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from kunde.access.guard import current_principal
from kunde.commerce.checkout import checkout, confirm_payment
from kunde.commerce.errors import ProductNotFound
from kunde.commerce.external import ExternalOrderIn, import_orders
from kunde.commerce.idempotency import idempotent
from kunde.commerce.service_carts import Address, CartService
from kunde.commerce.service_catalog import CatalogService, LocationIn, ProductIn
from kunde.commerce.service_orders import OrderService
from kunde.commerce.service_vouchers import VoucherService
from kunde.core.errors import Forbidden, InvalidInput
from kunde.web.deps import KernelDep

READ = {"permission": "commerce:read"}
WRITE = {"permission": "commerce:write"}
CRITICAL = {"permission": "commerce:write", "criticality": "critical"}
BULK = {"permission": "commerce:write", "criticality": "background"}
AnyRequest = Request[Any, Any, Any]


class CartCreate(msgspec.Struct, forbid_unknown_fields=True):
    currency: str
    channel: str = "web"
    customer_id: str | None = None
    email: str | None = None


class LineSet(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    quantity: int


class CartUpdate(msgspec.Struct, forbid_unknown_fields=True):
    shipping_method: str | None = None
    voucher_code: str | None = None
    remove_voucher: bool = False
    email: str | None = None
    address: Address | None = None


class CheckoutIn(msgspec.Struct, forbid_unknown_fields=True):
    payment_method: str = "test_approve"
    expected_total_minor: int | None = None
    email: str | None = None
    provider: str | None = None


class RefundIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    # Without an amount, ``lines`` (line id → units) are refunded at what was paid for
    # them: order-level discounts spread pro rata, shipping with the last unit.
    amount_minor: int | None = None
    method: str = "original"
    return_id: str | None = None
    lines: dict[str, int] | None = None


class CancelIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: str


class PromotionIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    kind: str  # percent | amount | free_shipping
    value: int
    currency: str
    min_subtotal_minor: int = 0
    category_prefix: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    active: bool = True


class VoucherIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    value: int
    currency: str
    reference: str
    customer_id: str | None = None
    expires_at: datetime | None = None


# -- catalog ------------------------------------------------------------------------------
@post("/v1/catalog/products", opt=BULK, tags=["commerce"],
      summary="Create or update products with variants, prices and stock")
async def upsert_products(request: AnyRequest, kernel: KernelDep,
                          data: JSONBody[list[ProductIn]]) -> Response[bytes]:
    return await idempotent(request, kernel, "commerce.catalog",
                            lambda: kernel.service(CatalogService).upsert_products(data))


@post("/v1/catalog/locations", opt=WRITE, tags=["commerce"],
      summary="Create or update stock locations (warehouses and stores)")
async def upsert_locations(request: AnyRequest, kernel: KernelDep,
                           data: JSONBody[list[LocationIn]]) -> Response[bytes]:
    async def run() -> dict[str, int]:
        return {"locations": await kernel.service(CatalogService).upsert_locations(data)}

    return await idempotent(request, kernel, "commerce.locations", run)


@get("/v1/catalog/products", opt=READ, tags=["commerce"], summary="Browse the catalog")
async def list_products(kernel: KernelDep, category: FromQuery[str | None] = None,
                        q: FromQuery[str | None] = None, limit: FromQuery[int] = 50,
                        offset: FromQuery[int] = 0) -> list[dict[str, Any]]:
    return await kernel.service(CatalogService).list_products(
        category=category, q=q, limit=limit, offset=offset)


@get("/v1/catalog/products/{code:str}", opt=READ, tags=["commerce"],
     summary="One product with its variants and free stock per location")
async def get_product(kernel: KernelDep, code: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(CatalogService).get_product(code)


@get("/v1/catalog/skus/{sku:str}", opt=READ, tags=["commerce"],
     summary="One SKU with its product's code, title, category and price")
async def get_sku(kernel: KernelDep, sku: FromPath[str]) -> dict[str, Any]:
    found = await kernel.service(CatalogService).describe_skus([sku])
    if sku not in found:
        raise ProductNotFound(f"no SKU {sku} in the catalog", sku=sku)
    return found[sku]


# -- promotions and vouchers -------------------------------------------------------------
@post("/v1/promotions", opt=WRITE, tags=["commerce"],
      summary="Create or update an automatic promotion (by name)")
async def upsert_promotion(request: AnyRequest, kernel: KernelDep,
                           data: JSONBody[PromotionIn]) -> Response[bytes]:
    async def run() -> dict[str, Any]:
        return await kernel.service(VoucherService).upsert_promotion(
            msgspec.structs.asdict(data))

    return await idempotent(request, kernel, "commerce.promotions", run)


@get("/v1/promotions", opt=READ, tags=["commerce"], summary="Promotions, active first")
async def list_promotions(kernel: KernelDep) -> list[dict[str, Any]]:
    return await kernel.service(VoucherService).promotions()


@post("/v1/vouchers", opt=WRITE, tags=["commerce"],
      summary="Issue a voucher (once per reference)")
async def issue_voucher(request: AnyRequest, kernel: KernelDep,
                        data: JSONBody[VoucherIn]) -> Response[bytes]:
    async def run() -> dict[str, Any]:
        async with kernel.db.transaction() as uow:
            code = await kernel.service(VoucherService).issue(
                uow, customer_id=data.customer_id, kind=data.kind, value=data.value,
                currency=data.currency, source="staff", source_ref=data.reference,
                expires_at=data.expires_at)
        return {"voucher_code": code}

    return await idempotent(request, kernel, "commerce.vouchers", run, status_code=201)


# -- carts and checkout ---------------------------------------------------------------------
@post("/v1/carts", opt=WRITE, tags=["commerce"], summary="Open a cart (guest or known customer)")
async def create_cart(request: AnyRequest, kernel: KernelDep,
                      data: JSONBody[CartCreate]) -> Response[bytes]:
    return await idempotent(request, kernel, "commerce.carts", lambda: kernel.service(
        CartService).create(currency=data.currency, channel=data.channel,
                            customer_id=data.customer_id, email=data.email), status_code=201)


@get("/v1/carts/{cart_id:str}", opt=READ, tags=["commerce"], summary="A cart with its totals")
async def get_cart(kernel: KernelDep, cart_id: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(CartService).get(cart_id)


@post("/v1/carts/{cart_id:str}/lines", opt=WRITE, tags=["commerce"],
      summary="Set a line's quantity (0 removes it); reserves stock")
async def set_line(request: AnyRequest, kernel: KernelDep, cart_id: FromPath[str],
                   data: JSONBody[LineSet]) -> Response[bytes]:
    return await idempotent(request, kernel, "commerce.cart_lines", lambda: kernel.service(
        CartService).set_line(cart_id, data.sku, data.quantity))


@post("/v1/carts/{cart_id:str}", opt=WRITE, tags=["commerce"],
      summary="Choose shipping, apply a voucher, name the customer, give the address")
async def update_cart(request: AnyRequest, kernel: KernelDep, cart_id: FromPath[str],
                      data: JSONBody[CartUpdate]) -> Response[bytes]:
    return await idempotent(request, kernel, "commerce.cart_update", lambda: kernel.service(
        CartService).update(cart_id, shipping_method=data.shipping_method,
                            voucher_code=data.voucher_code, remove_voucher=data.remove_voucher,
                            email=data.email, address=data.address))


@post("/v1/carts/{cart_id:str}/checkout", opt=CRITICAL, tags=["commerce"],
      summary="Place the order and take payment")
async def checkout_cart(request: AnyRequest, kernel: KernelDep, cart_id: FromPath[str],
                        data: JSONBody[CheckoutIn]) -> Response[bytes]:
    return await idempotent(request, kernel, "commerce.checkout", lambda: checkout(
        kernel, cart_id, payment_method=data.payment_method,
        expected_total_minor=data.expected_total_minor, email=data.email,
        provider=data.provider), status_code=201, in_handler=True)


@post("/webhooks/payments/{provider:str}", opt={"public": True, "criticality": "critical"},
      tags=["commerce"], summary="Signed payment outcome from a provider")
async def payment_webhook(request: AnyRequest, kernel: KernelDep,
                          provider: FromPath[str]) -> dict[str, Any]:
    return await confirm_payment(kernel, provider, request.headers, await request.body())


# -- orders ---------------------------------------------------------------------------------
@get("/v1/orders", opt=READ, tags=["commerce"], summary="Orders, newest first, filtered")
async def list_orders(kernel: KernelDep, status: FromQuery[str | None] = None,
                      external: FromQuery[bool | None] = None,
                      number: FromQuery[str | None] = None,
                      customer_id: FromQuery[str | None] = None, limit: FromQuery[int] = 50,
                      offset: FromQuery[int] = 0) -> list[dict[str, Any]]:
    return await kernel.service(OrderService).search(
        status=status, external=external, number=number, customer_id=customer_id,
        limit=min(limit, 500), offset=offset)


@get("/v1/orders/{order_id:str}", opt=READ, tags=["commerce"],
     summary="An order: lines, payments, refunds, status history")
async def get_order(kernel: KernelDep, order_id: FromPath[str]) -> dict[str, Any]:
    return await kernel.service(OrderService).get_order(order_id)


@get("/v1/customers/{customer_id:str}/orders", opt={"permission": "self"}, tags=["commerce"],
     summary="A customer's orders (a customer token sees only its own)")
async def customer_orders(request: AnyRequest, kernel: KernelDep,
                          customer_id: FromPath[str]) -> list[dict[str, Any]]:
    principal = current_principal(request)
    if principal is None or not principal.may_access_customer(customer_id):
        raise Forbidden("not your orders", code="auth.not_your_customer")
    if principal.kind != "customer" and not principal.can("commerce:read"):
        raise Forbidden("this action needs the permission 'commerce:read'",
                        code="auth.missing_permission")
    return await kernel.service(OrderService).list_orders(customer_id)


@post("/v1/orders/{order_id:str}/refunds", opt=CRITICAL, tags=["commerce"],
      summary="Refund (partially) to the original payment or as store credit")
async def refund_order(request: AnyRequest, kernel: KernelDep, order_id: FromPath[str],
                       data: JSONBody[RefundIn]) -> Response[bytes]:
    key = request.headers.get("idempotency-key")
    if not key:
        raise InvalidInput("refunds need an Idempotency-Key header",
                           code="commerce.idempotency_required")
    return await idempotent(request, kernel, "commerce.refunds", lambda: kernel.service(
        OrderService).refund(order_id, data.amount_minor, reason=data.reason,
                             method=data.method, idempotency_key=key,
                             return_id=data.return_id, lines=data.lines), status_code=201)


@post("/v1/orders/{order_id:str}/cancel", opt=CRITICAL, tags=["commerce"],
      summary="Cancel an order that has not shipped (refund separately)")
async def cancel_order(request: AnyRequest, kernel: KernelDep, order_id: FromPath[str],
                       data: JSONBody[CancelIn]) -> Response[bytes]:
    async def run() -> dict[str, Any]:
        svc = kernel.service(OrderService)
        async with kernel.db.transaction() as uow:
            await svc.cancel(uow, order_id, data.reason)
        return await svc.get_order(order_id)

    return await idempotent(request, kernel, "commerce.cancel", run)


@post("/v1/orders/import", opt=BULK, tags=["commerce"],
      summary="Import orders from an external shop (idempotent by external id)")
async def import_external(request: AnyRequest, kernel: KernelDep,
                          data: JSONBody[list[ExternalOrderIn]]) -> Response[bytes]:
    if len(data) > 1000:
        raise InvalidInput("at most 1000 orders per request", code="commerce.import_too_large")
    return await idempotent(request, kernel, "commerce.import",
                            lambda: import_orders(kernel, data))



ROUTES = [upsert_products, upsert_locations, list_products, get_product, get_sku,
          upsert_promotion,
          list_promotions, issue_voucher, create_cart,
          get_cart, set_line, update_cart, checkout_cart, payment_webhook, list_orders,
          get_order, customer_orders, refund_order, cancel_order, import_external]
