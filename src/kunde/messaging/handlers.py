"""Transactional mail triggered by commerce events (order confirmation, refund issued).

Mail about shipments, delays and returns is enqueued by fulfilment in its own
transactions; commerce does not need to call messaging for these two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kunde.core.events import Event
from kunde.kernel import Kernel
from kunde.messaging import peers
from kunde.messaging.service import MessagingService
from kunde.store.consumers import Consumer
from kunde.store.database import UnitOfWork

TYPES = frozenset({"commerce.order_placed", "commerce.refund_issued"})


def consumers(kernel: Kernel) -> list[Consumer]:
    service = kernel.service(MessagingService)

    async def handle(uow: UnitOfWork, events: Sequence[Event]) -> None:
        for e in events:
            p: dict[str, Any] = e.payload or {}
            if e.erased or not e.subject_id:
                continue
            if e.type == "commerce.order_placed" and not p.get("external"):
                await service.enqueue(
                    uow, customer_id=e.subject_id, template="order_confirmation",
                    context={"order_id": p.get("order_id"), "order_number": p.get("number"),
                             "lines": [{"title": ln.get("title"), "quantity": ln.get("quantity")}
                                       for ln in p.get("lines") or []],
                             "total_minor": p.get("total_minor"),
                             "currency": p.get("currency"),
                             "promised_date": p.get("promised_date")},
                    idempotency_key=f"order_confirmation:{p.get('order_id')}")
            elif e.type == "commerce.refund_issued":
                order = await peers.order_of(kernel, str(p.get("order_id")))
                await service.enqueue(
                    uow, customer_id=e.subject_id, template="refund_issued",
                    context={"order_id": p.get("order_id"),
                             "order_number": order.get("number") or str(p.get("order_id"))[:8],
                             "amount_minor": p.get("amount_minor"),
                             "currency": p.get("currency"), "method": p.get("method")},
                    idempotency_key=f"refund_issued:{p.get('refund_id')}")

    return [Consumer(name="messaging.transactional", handle=handle, types=TYPES)]
