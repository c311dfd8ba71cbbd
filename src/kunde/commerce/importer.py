"""Reading catalog files: CSV (one row per SKU) or JSON (a list of products).

CSV columns: ``product_code, product_title, brand, category, description, sku,
variant_title, price_minor, currency, image_urls`` (``|``-separated), any number of
``attr:<name>`` columns (variant attributes) and ``stock:<location code>`` columns.
Rows of one product may be anywhere in the file; product fields come from its first row.
Unknown location codes are created (``store-…`` as stores, others as warehouses).

JSON: ``[ProductIn, …]`` exactly as ``POST /v1/catalog/products`` takes it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from kunde.commerce.errors import BadImport
from kunde.commerce.service_catalog import (
    CatalogService,
    LocationIn,
    ProductIn,
    VariantIn,
    check_product,
)

if TYPE_CHECKING:
    from kunde.kernel import Kernel

BATCH = 200


def read_products(path: Path) -> list[ProductIn]:
    data = path.read_bytes()
    if path.suffix.lower() == ".json":
        try:
            return msgspec.json.decode(data, type=list[ProductIn])
        except msgspec.ValidationError as exc:
            raise BadImport(f"{path.name}: {exc}") from exc
    return list(parse_csv(data.decode("utf-8-sig")))


def parse_csv(text: str) -> Iterator[ProductIn]:
    reader = csv.DictReader(io.StringIO(text))
    required = {"product_code", "product_title", "sku", "price_minor", "currency"}
    missing = required - set(reader.fieldnames or [])
    if missing:
        raise BadImport(f"the CSV lacks columns: {', '.join(sorted(missing))}")
    grouped: dict[str, ProductIn] = {}
    for n, row in enumerate(reader, start=2):
        try:
            variant = VariantIn(
                sku=row["sku"].strip(), price_minor=int(row["price_minor"]),
                currency=row["currency"].strip().upper(),
                title=(row.get("variant_title") or "").strip(),
                attributes={k[5:]: v for k, v in row.items() if k.startswith("attr:") and v},
                image_urls=[u for u in (row.get("image_urls") or "").split("|") if u],
                stock={k[6:]: int(v) for k, v in row.items() if k.startswith("stock:") and v})
        except ValueError as exc:
            raise BadImport(f"line {n}: {exc}") from exc
        code = row["product_code"].strip()
        product = grouped.get(code)
        if product is None:
            grouped[code] = ProductIn(
                code=code, title=row["product_title"].strip(), variants=[variant],
                brand=(row.get("brand") or None), category=(row.get("category") or ""),
                description=(row.get("description") or None),
                image_urls=variant.image_urls)
        else:
            product.variants.append(variant)
    yield from grouped.values()


async def import_products(kernel: Kernel, items: list[ProductIn],
                          progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Upsert in batches of `BATCH` products, one transaction each; reports progress."""
    for p in items:
        check_product(p)
    catalog = kernel.service(CatalogService)
    known = {loc["code"] for loc in await catalog.locations()}
    named = {code for p in items for v in p.variants for code in v.stock}
    await catalog.upsert_locations([
        LocationIn(code, code, kind="store" if code.startswith("store-") else "warehouse")
        for code in sorted(named - known)])
    totals = {"products": 0, "variants": 0, "stock_rows": 0}
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        counts = await catalog.upsert_products(batch)
        for k, v in counts.items():
            totals[k] += v
        if progress:
            progress(len(batch))
    return totals
