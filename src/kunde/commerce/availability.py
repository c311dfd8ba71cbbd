"""Which catalog SKUs cannot be sold now, for other features (recommendations, offers).

A SKU is unavailable when its variant is inactive or no location has a free unit
(``on_hand - reserved``); a variant without stock rows cannot be added to a cart either.
SKUs the catalog does not know are not reported: they may be sold elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from kunde.commerce.tables import stock, variants

if TYPE_CHECKING:
    from kunde.kernel import Kernel


async def unavailable(kernel: Kernel, skus: Sequence[str] | None = None) -> set[str]:
    """The unavailable SKUs among ``skus``, or in the whole catalog when ``skus`` is None.

    Two reads, not an outer join: the catalog is a reference table and stock is
    distributed by variant (docs/commerce.md), so free units are summed per variant."""
    if skus is not None and not skus:
        return set()
    q = sa.select(variants.c.id, variants.c.sku, variants.c.active)
    if skus is not None:
        q = q.where(variants.c.sku.in_(list(skus)))
    free = sa.func.sum(sa.case(
        (stock.c.on_hand > stock.c.reserved, stock.c.on_hand - stock.c.reserved), else_=0))
    async with kernel.db.read() as conn:
        known = (await conn.execute(q)).all()
        if not known:
            return set()
        fq = sa.select(stock.c.variant_id, free).group_by(stock.c.variant_id)
        if skus is not None:
            fq = fq.where(stock.c.variant_id.in_([v.id for v in known]))
        free_by_variant = {str(v): int(n or 0) for v, n in await conn.execute(fq)}
    return {str(v.sku) for v in known
            if not v.active or free_by_variant.get(str(v.id), 0) <= 0}
