"""Carts: guest or known customers, lines with stock reserved for a while, totals.

Stock is reserved when a line is added (``reserved = reserved + n`` guarded by
``on_hand - reserved >= n``, per location, warehouses before stores) and held for
`RESERVATION_TTL`, renewed whenever the cart changes; the sweep job releases
reservations of carts left alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from kunde.commerce import pricing
from kunde.commerce.errors import CartNotFound, CartNotOpen, OutOfStock, VoucherInvalid
from kunde.commerce.service_catalog import CatalogService
from kunde.commerce.service_vouchers import VoucherService
from kunde.commerce.tables import (
    cart_lines,
    carts,
    locations,
    promotions,
    reservations,
    stock,
)
from kunde.core.errors import InvalidInput
from kunde.core.ids import new_id
from kunde.store.database import UnitOfWork
from kunde.store.jobs import PeriodicJob

if TYPE_CHECKING:
    from kunde.kernel import Kernel

RESERVATION_TTL = timedelta(minutes=15)
MAX_QUANTITY = 999


class Address(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    line1: str
    postal_code: str
    city: str
    country: str
    line2: str | None = None


async def ensure_customer(kernel: Kernel, uow: UnitOfWork | None, email: str, channel: str
                          ) -> str:
    """The customer with this email, created if new (profiles' contract)."""
    from kunde.profiles.service import ProfileService

    return await kernel.service(ProfileService).ensure_customer(
        {"email": email}, channel, uow=uow)


class CartService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def create(self, *, currency: str, channel: str = "web",
                     customer_id: str | None = None, email: str | None = None
                     ) -> dict[str, Any]:
        if len(currency) != 3:
            raise InvalidInput("currency must be an ISO 4217 code", code="commerce.currency")
        if email and not customer_id:
            customer_id = await ensure_customer(self.kernel, None, email, channel)
        cart_id = new_id()
        now = self.kernel.clock.now()
        async with self.kernel.db.transaction() as uow:
            await uow.execute(carts.insert().values(
                id=cart_id, customer_id=customer_id, channel=channel,
                currency=currency.upper(), status="open", shipping_method="standard",
                created_at=now, updated_at=now))
        return await self.get(cart_id)

    async def set_line(self, cart_id: str, sku: str, quantity: int) -> dict[str, Any]:
        """Set a line's quantity (0 removes it), reserving or releasing stock to match."""
        if not 0 <= quantity <= MAX_QUANTITY:
            raise InvalidInput(f"quantity must be 0 to {MAX_QUANTITY}",
                               code="commerce.invalid_quantity")
        async with self.kernel.db.transaction() as uow:
            cart = await self.open_cart(uow, cart_id)
            variant = await self.kernel.service(CatalogService).variant_by_sku(uow, sku)
            if variant.currency != cart.currency or not variant.active:
                raise OutOfStock(f"{sku} is not sold in {cart.currency}", sku=sku)
            held = await self._held(uow, cart_id, variant.id)
            if quantity > held:
                await self.reserve(uow, cart_id, variant.id, quantity - held, sku)
            elif quantity < held:
                await self._release(uow, cart_id, variant.id, held - quantity)
            await uow.execute(cart_lines.delete().where(
                cart_lines.c.cart_id == cart_id, cart_lines.c.sku == sku))
            if quantity:
                await uow.execute(cart_lines.insert().values(
                    cart_id=cart_id, sku=sku, variant_id=variant.id, quantity=quantity,
                    unit_price_minor=variant.price_minor, added_at=self.kernel.clock.now()))
            await self.touch(uow, cart_id)
        return await self.get(cart_id)

    async def update(self, cart_id: str, *, shipping_method: str | None = None,
                     voucher_code: str | None = None, remove_voucher: bool = False,
                     email: str | None = None, address: Address | None = None
                     ) -> dict[str, Any]:
        async with self.kernel.db.transaction() as uow:
            cart = await self.open_cart(uow, cart_id)
            values: dict[str, Any] = {}
            customer_id = cart.customer_id
            if email and not customer_id:
                customer_id = await ensure_customer(self.kernel, uow, email, cart.channel)
                values["customer_id"] = customer_id
            if shipping_method is not None:
                if shipping_method not in pricing.SHIPPING_METHODS:
                    raise InvalidInput(
                        f"shipping method must be one of {', '.join(pricing.SHIPPING_METHODS)}",
                        code="commerce.unknown_shipping_method")
                values["shipping_method"] = shipping_method
            if voucher_code:
                found = await self.kernel.service(VoucherService).check(
                    uow, voucher_code, customer_id=customer_id, currency=cart.currency)
                values["voucher_code"] = found["code"]
            if remove_voucher:
                values["voucher_code"] = None
            if address is not None:
                if not customer_id:
                    raise InvalidInput("give the customer's email before the address",
                                       code="commerce.address_needs_customer")
                values["ship_country"] = address.country.upper()[:2]
                values["address_enc"] = await self.kernel.vault.encrypt_field(
                    uow, customer_id, msgspec.json.encode(address).decode())
            if values:
                await uow.execute(carts.update().where(carts.c.id == cart_id).values(**values))
            await self.touch(uow, cart_id)
        return await self.get(cart_id)

    # -- stock ---------------------------------------------------------------------------
    async def reserve(self, uow: UnitOfWork, cart_id: str, variant_id: str, n: int,
                      sku: str) -> None:
        rows = (await uow.execute(
            sa.select(stock.c.location_id, (stock.c.on_hand - stock.c.reserved).label("free"))
            .join(locations, locations.c.id == stock.c.location_id)
            .where(stock.c.variant_id == variant_id, stock.c.on_hand > stock.c.reserved)
            .order_by(sa.case((locations.c.kind == "warehouse", 0), else_=1),
                      locations.c.code))).all()
        left = n
        expires = self.kernel.clock.now() + RESERVATION_TTL
        for row in rows:
            location_id, take = row.location_id, min(left, int(row.free))
            done = await uow.execute(stock.update().where(
                stock.c.variant_id == variant_id, stock.c.location_id == location_id,
                stock.c.on_hand - stock.c.reserved >= take).values(
                reserved=stock.c.reserved + take))
            if done.rowcount != 1:
                continue
            upd = await uow.execute(reservations.update().where(
                reservations.c.cart_id == cart_id, reservations.c.variant_id == variant_id,
                reservations.c.location_id == location_id).values(
                quantity=reservations.c.quantity + take, expires_at=expires))
            if upd.rowcount == 0:
                await uow.execute(reservations.insert().values(
                    cart_id=cart_id, variant_id=variant_id, location_id=location_id,
                    quantity=take, expires_at=expires))
            left -= take
            if not left:
                return
        raise OutOfStock(f"only {n - left} more of {sku} in stock", sku=sku,
                         available=n - left)

    async def _held(self, conn: Any, cart_id: str, variant_id: str) -> int:
        value = (await conn.execute(sa.select(sa.func.sum(reservations.c.quantity)).where(
            reservations.c.cart_id == cart_id, reservations.c.variant_id == variant_id)
        )).scalar()
        return int(value or 0)

    async def held_by_variant(self, conn: Any, cart_id: str) -> dict[str, int]:
        rows = await conn.execute(
            sa.select(reservations.c.variant_id, sa.func.sum(reservations.c.quantity))
            .where(reservations.c.cart_id == cart_id).group_by(reservations.c.variant_id))
        return {str(v): int(n) for v, n in rows}

    async def _release(self, uow: UnitOfWork, cart_id: str, variant_id: str | None,
                       n: int | None) -> None:
        """Give back ``n`` units (all when None) of one variant (all when None)."""
        q = sa.select(reservations).where(reservations.c.cart_id == cart_id).order_by(
            reservations.c.variant_id, reservations.c.location_id)
        if variant_id is not None:
            q = q.where(reservations.c.variant_id == variant_id)
        for r in (await uow.execute(q)).all():
            give = r.quantity if n is None else min(n, r.quantity)
            await uow.execute(stock.update().where(
                stock.c.variant_id == r.variant_id, stock.c.location_id == r.location_id)
                .values(reserved=stock.c.reserved - give))
            key = (reservations.c.cart_id == cart_id,
                   reservations.c.variant_id == r.variant_id,
                   reservations.c.location_id == r.location_id)
            if give == r.quantity:
                await uow.execute(reservations.delete().where(*key))
            else:
                await uow.execute(reservations.update().where(*key).values(
                    quantity=reservations.c.quantity - give))
            if n is not None:
                n -= give
                if n <= 0:
                    return

    async def touch(self, uow: UnitOfWork, cart_id: str) -> None:
        now = self.kernel.clock.now()
        await uow.execute(carts.update().where(carts.c.id == cart_id).values(updated_at=now))
        await uow.execute(reservations.update().where(reservations.c.cart_id == cart_id)
                          .values(expires_at=now + RESERVATION_TTL))

    async def open_cart(self, uow: Any, cart_id: str) -> Any:
        cart = (await uow.execute(sa.select(carts).where(carts.c.id == cart_id))).first()
        return self.check_open(cart_id, cart)

    def check_open(self, cart_id: str, cart: Any) -> Any:
        """The cart row, if it exists and is open."""
        if cart is None:
            raise CartNotFound(f"no cart {cart_id}")
        if cart.status != "open":
            raise CartNotOpen(f"the cart is {cart.status}", cart_status=cart.status,
                              order_id=cart.order_id)
        return cart

    # -- reading and totals ------------------------------------------------------------------
    async def get(self, cart_id: str) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            cart = (await conn.execute(sa.select(carts).where(carts.c.id == cart_id))).first()
            if cart is None:
                raise CartNotFound(f"no cart {cart_id}")
            return await self.describe(conn, cart)

    async def describe(self, conn: Any, cart: Any) -> dict[str, Any]:
        lines = await self.lines(conn, cart.id)
        totals = await self.totals(conn, cart, lines)
        held = (await conn.execute(sa.select(sa.func.min(reservations.c.expires_at)).where(
            reservations.c.cart_id == cart.id))).scalar()
        return {
            "cart_id": cart.id, "status": cart.status, "customer_id": cart.customer_id,
            "channel": cart.channel, "currency": cart.currency,
            "shipping_method": cart.shipping_method, "voucher_code": cart.voucher_code,
            "order_id": cart.order_id, "last_decline": cart.last_decline,
            "lines": [{"sku": ln["sku"], "title": ln["title"], "quantity": ln["quantity"],
                       "unit_price_minor": ln["unit_price_minor"],
                       "total_minor": ln["quantity"] * ln["unit_price_minor"]}
                      for ln in lines],
            "subtotal_minor": totals.subtotal_minor, "discount_minor": totals.discount_minor,
            "shipping_minor": totals.shipping_minor, "total_minor": totals.total_minor,
            "applied": totals.applied,
            "reserved_until": held.isoformat() if held else None,
            "shipping_methods": [{"code": m.code, "name": m.name, "price_minor": m.price_minor,
                                  "business_days": m.business_days}
                                 for m in pricing.SHIPPING_METHODS.values()],
        }

    async def lines(self, conn: Any, cart_id: str, *, with_held: bool = False
                    ) -> list[dict[str, Any]]:
        """The cart's lines with the catalog's current price; ``with_held`` adds ``held``,
        the units reserved for the line (what `held_by_variant` says, in the same query)."""
        from kunde.commerce.tables import products, variants

        columns: list[Any] = [cart_lines, variants.c.price_minor.label("current_price"),
                              variants.c.active, variants.c.product_id, products.c.category,
                              variants.c.title]
        if with_held:
            columns.append(sa.select(sa.func.coalesce(sa.func.sum(reservations.c.quantity), 0))
                           .where(reservations.c.cart_id == cart_lines.c.cart_id,
                                  reservations.c.variant_id == cart_lines.c.variant_id)
                           .scalar_subquery().label("held"))
        rows = await conn.execute(
            sa.select(*columns)
            .join(variants, variants.c.id == cart_lines.c.variant_id)
            .join(products, products.c.id == variants.c.product_id)
            .where(cart_lines.c.cart_id == cart_id).order_by(cart_lines.c.added_at,
                                                             cart_lines.c.sku))
        return [dict(r._mapping) for r in rows]

    async def totals(self, conn: Any, cart: Any, lines: list[dict[str, Any]]
                     ) -> pricing.Totals:
        priced = [pricing.PricedLine(ln["sku"], ln["category"], ln["quantity"],
                                     ln["unit_price_minor"]) for ln in lines]
        voucher = None
        if cart.voucher_code:
            try:
                v = await self.kernel.service(VoucherService).check(
                    conn, cart.voucher_code, customer_id=cart.customer_id,
                    currency=cart.currency)
                voucher = pricing.Voucher(v["code"], v["kind"], v["value"])
            except VoucherInvalid:
                if cart.status == "open":
                    voucher = None
                else:  # reserved by this cart's own checkout
                    voucher = await self._own_voucher(conn, cart)
        return pricing.compute_totals(priced, await self.promotions(conn, cart.currency),
                                      voucher, pricing.SHIPPING_METHODS[cart.shipping_method])

    async def _own_voucher(self, conn: Any, cart: Any) -> pricing.Voucher | None:
        from kunde.commerce.tables import vouchers

        v = (await conn.execute(sa.select(vouchers).where(
            vouchers.c.code == cart.voucher_code))).first()
        return pricing.Voucher(v.code, v.kind, v.value) if v is not None else None

    async def promotions(self, conn: Any, currency: str) -> list[pricing.Promotion]:
        now = self.kernel.clock.now()
        rows = await conn.execute(sa.select(promotions).where(
            promotions.c.active.is_(True), promotions.c.currency == currency,
            sa.or_(promotions.c.starts_at.is_(None), promotions.c.starts_at <= now),
            sa.or_(promotions.c.ends_at.is_(None), promotions.c.ends_at > now)))
        return [pricing.Promotion(r.name, r.kind, r.value, r.min_subtotal_minor,
                                  r.category_prefix) for r in rows]

    # -- the sweep ---------------------------------------------------------------------------
    async def release_expired(self) -> int:
        """Release reservations of open carts idle past their expiry; returns carts swept.

        One short transaction per cart, re-checking the cart inside it: a customer who
        touched the cart meanwhile keeps the stock.
        """
        now = self.kernel.clock.now()
        async with self.kernel.db.read() as conn:
            ids = (await conn.execute(
                sa.select(reservations.c.cart_id).distinct()
                .join(carts, carts.c.id == reservations.c.cart_id)
                .where(reservations.c.expires_at < now, carts.c.status == "open")
                .limit(500))).scalars().all()
        swept = 0
        for cart_id in ids:
            async with self.kernel.db.transaction() as uow:
                still = (await uow.execute(
                    sa.select(reservations.c.cart_id)
                    .join(carts, carts.c.id == reservations.c.cart_id)
                    .where(reservations.c.cart_id == cart_id, reservations.c.expires_at < now,
                           carts.c.status == "open").limit(1))).first()
                if still is not None:
                    await self._release(uow, cart_id, None, None)
                    swept += 1
        return swept

    def sweep_job(self) -> PeriodicJob:
        async def run() -> str:
            return f"released reservations of {await self.release_expired()} carts"

        return PeriodicJob(name="commerce.reservation_sweep", every=timedelta(minutes=1),
                           run=run)
