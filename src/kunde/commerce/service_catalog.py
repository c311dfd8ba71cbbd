"""Catalog: products, variants (SKUs), prices, locations and stock; bulk upsert and import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import sqlalchemy as sa

from kunde.commerce.errors import BadImport, ProductNotFound
from kunde.commerce.tables import locations, products, stock, variants
from kunde.core.ids import new_id
from kunde.store.database import UnitOfWork
from kunde.store.sql import upsert

if TYPE_CHECKING:
    from kunde.kernel import Kernel


class VariantIn(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    price_minor: int
    currency: str
    title: str = ""
    attributes: dict[str, str] = {}
    image_urls: list[str] = []
    # location code → units on hand (absolute, not a delta)
    stock: dict[str, int] = {}
    active: bool = True


class ProductIn(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    title: str
    variants: list[VariantIn]
    brand: str | None = None
    category: str = ""
    description: str | None = None
    attributes: dict[str, str] = {}
    image_urls: list[str] = []


class LocationIn(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    name: str
    kind: str = "warehouse"
    country: str = "DE"


def check_product(p: ProductIn) -> None:
    if not p.code.strip() or not p.title.strip():
        raise BadImport(f"product {p.code!r}: code and title are required")
    if not p.variants:
        raise BadImport(f"product {p.code!r} has no variants")
    for v in p.variants:
        if not v.sku.strip():
            raise BadImport(f"product {p.code!r}: a variant has no SKU")
        if v.price_minor < 0:
            raise BadImport(f"SKU {v.sku}: price_minor must be ≥ 0 (integer minor units)")
        if len(v.currency) != 3 or not v.currency.isalpha():
            raise BadImport(f"SKU {v.sku}: currency must be an ISO 4217 code like EUR")
        if any(q < 0 for q in v.stock.values()):
            raise BadImport(f"SKU {v.sku}: stock must be ≥ 0")


class CatalogService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def upsert_locations(self, items: Sequence[LocationIn]) -> int:
        for loc in items:
            if loc.kind not in ("warehouse", "store"):
                raise BadImport(f"location {loc.code}: kind is warehouse or store")
        async with self.kernel.db.transaction() as uow:
            if items:
                await uow.execute(
                    upsert(uow.dialect, locations, ["code"], ["name", "kind", "country"]),
                    [{"id": new_id(), "code": loc.code, "name": loc.name, "kind": loc.kind,
                      "country": loc.country.upper()} for loc in items])
        return len(items)

    async def upsert_products(self, items: Sequence[ProductIn]) -> dict[str, int]:
        """Create or update products, their variants and stock, in one transaction."""
        if not items:
            raise BadImport("send at least one product")
        for p in items:
            check_product(p)
        async with self.kernel.db.transaction() as uow:
            return await self._upsert(uow, items)

    async def _upsert(self, uow: UnitOfWork, items: Sequence[ProductIn]) -> dict[str, int]:
        now = self.kernel.clock.now()
        await uow.execute(
            upsert(uow.dialect, products, ["code"],
                   ["title", "brand", "category", "description", "attributes", "image_urls",
                    "updated_at"]),
            [{"id": new_id(), "code": p.code, "title": p.title, "brand": p.brand,
              "category": p.category.strip("/"), "description": p.description,
              "attributes": p.attributes, "image_urls": p.image_urls, "created_at": now,
              "updated_at": now} for p in items])
        ids = _pairs(await uow.execute(sa.select(products.c.code, products.c.id).where(
            products.c.code.in_([p.code for p in items]))))
        vrows = [{"id": new_id(), "product_id": ids[p.code], "sku": v.sku,
                  "title": v.title or p.title, "attributes": v.attributes,
                  "image_urls": v.image_urls or p.image_urls, "price_minor": v.price_minor,
                  "currency": v.currency.upper(), "active": v.active, "updated_at": now}
                 for p in items for v in p.variants]
        await uow.execute(
            upsert(uow.dialect, variants, ["sku"],
                   ["product_id", "title", "attributes", "image_urls", "price_minor",
                    "currency", "active", "updated_at"]), vrows)
        skus = [v.sku for p in items for v in p.variants]
        vids = _pairs(await uow.execute(sa.select(variants.c.sku, variants.c.id).where(
            variants.c.sku.in_(skus))))
        wanted = {code for p in items for v in p.variants for code in v.stock}
        locs = _pairs(await uow.execute(sa.select(locations.c.code, locations.c.id).where(
            locations.c.code.in_(list(wanted))))) if wanted else {}
        missing = wanted - set(locs)
        if missing:
            raise BadImport(f"unknown stock locations: {', '.join(sorted(missing))}; "
                            "create them first")
        srows = [{"variant_id": vids[v.sku], "location_id": locs[code], "on_hand": qty,
                  "reserved": 0}
                 for p in items for v in p.variants for code, qty in v.stock.items()]
        if srows:
            await uow.execute(upsert(uow.dialect, stock, ["variant_id", "location_id"],
                                     ["on_hand"]), srows)
        return {"products": len(items), "variants": len(vrows), "stock_rows": len(srows)}

    # -- reading ---------------------------------------------------------------------------
    async def get_product(self, code: str) -> dict[str, Any]:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(products).where(
                sa.or_(products.c.code == code, products.c.id == code)))).first()
            if row is None:
                raise ProductNotFound(f"no product {code}")
            return (await self._describe(conn, [row]))[0]

    async def list_products(self, *, category: str | None = None, q: str | None = None,
                            limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        query = sa.select(products)
        if category:
            query = query.where(products.c.category.startswith(category.strip("/")))
        if q:
            query = query.where(products.c.title.ilike(f"%{q}%"))
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(query.order_by(products.c.code).limit(min(limit, 500))
                                       .offset(offset))).all()
            return await self._describe(conn, rows)

    async def _describe(self, conn: Any, rows: Sequence[Any]) -> list[dict[str, Any]]:
        if not rows:
            return []
        vs = (await conn.execute(sa.select(variants).where(
            variants.c.product_id.in_([r.id for r in rows])).order_by(variants.c.sku))).all()
        avail = await self._available(conn, [v.id for v in vs])
        by_product: dict[str, list[dict[str, Any]]] = {}
        for v in vs:
            by_product.setdefault(v.product_id, []).append({
                "sku": v.sku, "title": v.title, "attributes": v.attributes,
                "image_urls": v.image_urls, "price_minor": v.price_minor,
                "currency": v.currency, "active": bool(v.active),
                "available": avail.get(v.id, {})})
        return [{"product_id": r.id, "code": r.code, "title": r.title, "brand": r.brand,
                 "category": r.category, "description": r.description,
                 "attributes": r.attributes, "image_urls": r.image_urls,
                 "variants": by_product.get(r.id, [])} for r in rows]

    async def _available(self, conn: Any, variant_ids: list[str]) -> dict[str, dict[str, int]]:
        if not variant_ids:
            return {}
        rows = await conn.execute(
            sa.select(stock.c.variant_id, locations.c.code,
                      (stock.c.on_hand - stock.c.reserved).label("free"))
            .join(locations, locations.c.id == stock.c.location_id)
            .where(stock.c.variant_id.in_(variant_ids)))
        out: dict[str, dict[str, int]] = {}
        for vid, code, free in rows:
            out.setdefault(vid, {})[code] = int(free)
        return out

    async def variant_by_sku(self, conn: Any, sku: str) -> Any:
        """Variant joined with its product (title, category) or ProductNotFound."""
        row = (await conn.execute(
            sa.select(variants, products.c.title.label("product_title"),
                      products.c.category, products.c.code.label("product_code"))
            .join(products, products.c.id == variants.c.product_id)
            .where(variants.c.sku == sku))).first()
        if row is None:
            raise ProductNotFound(f"no SKU {sku} in the catalog", sku=sku)
        return row

    async def describe_skus(self, skus: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Catalog facts per known SKU, for linking interactions (Product Viewed, …) to
        catalog items: product id and code, titles, category path, brand, price."""
        if not skus:
            return {}
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(
                sa.select(variants.c.sku, variants.c.product_id, variants.c.title,
                          variants.c.price_minor, variants.c.currency, variants.c.attributes,
                          products.c.code, products.c.title.label("product_title"),
                          products.c.category, products.c.brand)
                .join(products, products.c.id == variants.c.product_id)
                .where(variants.c.sku.in_(list(skus))))
            return {r.sku: {"sku": r.sku, "product_id": r.product_id, "product_code": r.code,
                            "title": r.title, "product_title": r.product_title,
                            "category": r.category, "brand": r.brand,
                            "price_minor": r.price_minor, "currency": r.currency,
                            "attributes": r.attributes} for r in rows}

    async def locations(self) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(locations).order_by(locations.c.code))
            return [dict(r._mapping) for r in rows]


def _pairs(result: Any) -> dict[str, str]:
    return {str(a): str(b) for a, b in result}
