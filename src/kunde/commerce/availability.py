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
    """The unavailable SKUs among ``skus``, or in the whole catalog when ``skus`` is None."""
    if skus is not None and not skus:
        return set()
    free = sa.func.coalesce(sa.func.sum(sa.case(
        (stock.c.on_hand > stock.c.reserved, stock.c.on_hand - stock.c.reserved), else_=0)), 0)
    q = (sa.select(variants.c.sku)
         .select_from(variants.outerjoin(stock, stock.c.variant_id == variants.c.id))
         .group_by(variants.c.id, variants.c.sku, variants.c.active)
         .having(sa.or_(variants.c.active.is_(False), free <= 0)))
    if skus is not None:
        q = q.where(variants.c.sku.in_(list(skus)))
    async with kernel.db.read() as conn:
        return {str(r[0]) for r in await conn.execute(q)}
