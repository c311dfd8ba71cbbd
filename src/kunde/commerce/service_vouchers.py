"""Vouchers: issued by loyalty rewards, goodwill and store-credit refunds; redeemed at checkout."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.commerce.errors import VoucherInvalid
from kunde.commerce.tables import promotions, voucher_causes, vouchers
from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.store.database import UnitOfWork
from kunde.store.sql import insert_ignore, upsert

if TYPE_CHECKING:
    from kunde.kernel import Kernel

KINDS = ("amount", "percent", "free_shipping")
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a till


def new_code() -> str:
    return "KV-" + "".join(secrets.choice(_ALPHABET) for _ in range(10))


class VoucherService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def issue(
        self,
        uow: UnitOfWork,
        *,
        customer_id: str | None,
        kind: str,
        value: int,
        currency: str,
        source: str,
        source_ref: str,
        expires_at: datetime | None,
    ) -> str:
        """Issue a voucher inside the caller's transaction; returns its code.

        Idempotent by ``(source, source_ref)``: issuing again for the same cause returns
        the first voucher's code and emits nothing.
        """
        if kind not in KINDS:
            raise VoucherInvalid(f"voucher kind must be one of {', '.join(KINDS)}")
        if kind != "free_shipping" and value <= 0:
            raise VoucherInvalid("a voucher needs a positive value")
        if kind == "percent" and value > 100:
            raise VoucherInvalid("a percent voucher cannot exceed 100")
        code = new_code()
        # The cause is claimed first, in its own table (unique across all customers).
        claimed = await uow.execute(
            insert_ignore(uow.dialect, voucher_causes, ["source", "source_ref"]),
            {"source": source, "source_ref": source_ref, "code": code})
        if claimed.rowcount != 1:
            existing = (await uow.execute(sa.select(voucher_causes.c.code).where(
                voucher_causes.c.source == source,
                voucher_causes.c.source_ref == source_ref))).scalar_one()
            return str(existing)
        await uow.execute(vouchers.insert().values(
            code=code, customer_id=customer_id, kind=kind, value=value,
            currency=currency.upper(), source=source, source_ref=source_ref,
            created_at=self.kernel.clock.now(), expires_at=expires_at))
        uow.emit(Event.new("commerce.voucher_issued", {
            "voucher_code": code, "kind": kind, "value": value, "currency": currency.upper(),
            "source": source, "source_ref": source_ref,
            "expires_at": expires_at.isoformat() if expires_at else None,
        }, subject_id=customer_id, source="commerce"))
        return code

    async def check(self, conn: Any, code: str, *, customer_id: str | None, currency: str
                    ) -> dict[str, Any]:
        """The voucher if ``customer_id`` may use it now in ``currency``; else VoucherInvalid."""
        row = (await conn.execute(sa.select(vouchers).where(
            vouchers.c.code == code.strip().upper()))).first()
        if row is None:
            raise VoucherInvalid("no voucher with this code")
        if row.redeemed_at is not None:
            raise VoucherInvalid("this voucher has been used")
        if row.expires_at is not None and row.expires_at <= self.kernel.clock.now():
            raise VoucherInvalid("this voucher has expired")
        if row.customer_id is not None and row.customer_id != customer_id:
            raise VoucherInvalid("this voucher belongs to another customer")
        if row.kind == "amount" and row.currency != currency:
            raise VoucherInvalid(f"this voucher is in {row.currency}, the cart in {currency}")
        return dict(row._mapping)

    async def redeem(self, uow: UnitOfWork, code: str, order_id: str) -> None:
        """Mark used, atomically: two checkouts racing for one voucher cannot both win."""
        result = await uow.execute(
            vouchers.update()
            .where(vouchers.c.code == code, vouchers.c.redeemed_at.is_(None))
            .values(redeemed_at=self.kernel.clock.now(), redeemed_order_id=order_id))
        if result.rowcount != 1:
            raise VoucherInvalid("this voucher has been used")

    async def for_customer(self, customer_id: str) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(vouchers).where(
                vouchers.c.customer_id == customer_id).order_by(vouchers.c.created_at))
            return [dict(r._mapping) for r in rows]

    # -- automatic promotions ------------------------------------------------------------
    async def upsert_promotion(self, p: dict[str, Any]) -> dict[str, Any]:
        if p["kind"] not in KINDS:
            raise VoucherInvalid(f"promotion kind must be one of {', '.join(KINDS)}",
                                 code="commerce.promotion_invalid")
        if p["kind"] == "percent" and not 0 < p["value"] <= 100:
            raise VoucherInvalid("a percent promotion is 1 to 100",
                                 code="commerce.promotion_invalid")
        row = {**p, "id": new_id(), "currency": p["currency"].upper()}
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, promotions, ["name"], [
                k for k in row if k not in ("id", "name")]), row)
        return {k: v for k, v in row.items() if k != "id"}

    async def promotions(self) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(promotions).order_by(
                promotions.c.active.desc(), promotions.c.name))
            return [dict(r._mapping) for r in rows]
