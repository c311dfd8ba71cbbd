"""The erasure receipt, e-mailed to the requester through messaging's outbox.

What it may hold, so that an erasure still leaves nothing about the person behind:

* The mail says only the request id, the dates and how many orders are kept for the
  statutory period: no name, no address, nothing from the profile.
* The one personal value needed, the address to send to, is read from the profile (or
  the e-mail given with the request) *before* the customer's key is shredded and handed
  to messaging in the erasure transaction. Messaging seals the message (its context,
  and once sent the archived recipient, subject and body) under the vault subject
  `receipt_subject(request_id)`: a key of its own, never the erased customer's.
* `seal_receipts` (job ``privacy.receipts``) shreds that key as soon as the message is
  sent or has failed for good, or `RECEIPT_MAX_WAIT` after the erasure at the latest.
  From then on the archive copy keeps only its template, status and dates, and the
  erasure request keeps the message id and delivery status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.ids import derived_id
from kunde.privacy.subjects import profile_service
from kunde.privacy.tables import erasure_requests, shredded_subjects
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.features import Feature
    from kunde.kernel import Kernel

log = logging.getLogger("kunde.privacy")
TEMPLATE = "privacy_erasure_receipt"
# After this long an undelivered receipt is given up and its key shredded anyway.
RECEIPT_MAX_WAIT = timedelta(days=7)
# Requests completed longer ago than this are not looked at again.
RECEIPT_SCAN = timedelta(days=30)


def receipt_subject(request_id: str) -> str:
    """The vault subject the receipt message is sealed under (not the erased customer)."""
    return derived_id("privacy.erasure_receipt", request_id)


async def requester_address(kernel: Kernel, customer_id: str,
                            fallback: str | None = None) -> tuple[str | None, str | None]:
    """(e-mail, locale) of the requester from the profile while it is still readable."""
    profiles = profile_service(kernel)
    profile: dict[str, Any] = {}
    if profiles is not None and hasattr(profiles, "get_profile"):
        try:
            profile = dict(await profiles.get_profile(customer_id))
        except Exception as exc:  # unknown or already erased: no profile to read
            log.info("no profile for an erasure receipt: %s", type(exc).__name__)
    email = profile.get("email") or fallback
    locale = profile.get("locale")
    return (str(email) if email else None), (str(locale) if locale else None)


async def queue_receipt(kernel: Kernel, uow: UnitOfWork, features: Sequence[Feature],
                        request_id: str, receipt: dict[str, Any], email: str | None,
                        locale: str | None, requested_on: str) -> dict[str, Any]:
    """Queue the receipt mail inside the erasure transaction; returns the delivery record
    stored in the receipt (never the address)."""
    if not any(f.name == "messaging" for f in features):
        return {"channel": None, "status": "not sent: messaging is not installed"}
    if not email:
        return {"channel": None, "status": "not sent: no e-mail address is known"}
    from kunde.messaging.service import MessagingService

    commerce = (receipt.get("features") or {}).get("commerce") or {}
    message_id = await kernel.service(MessagingService).enqueue(
        uow, customer_id=receipt_subject(request_id), template=TEMPLATE,
        context={"email": email, "request_id": request_id, "requested_on": requested_on,
                 "erased_on": str(receipt["erased_at"])[:10],
                 "orders_kept": int(commerce.get("orders_pseudonymised", 0))},
        purpose="transactional", locale=locale,
        idempotency_key=f"privacy.erasure_receipt:{request_id}")
    if message_id is None:
        return {"channel": None, "status": "not sent: suppressed by messaging"}
    return {"channel": "email", "message_id": message_id, "status": "queued"}


async def seal_receipts(kernel: Kernel) -> int:
    """Shred the key of every receipt that was sent, failed for good or waited too long;
    records the outcome in the request's receipt. Returns how many were sealed."""
    from kunde.messaging.service import MessagingService

    now = kernel.clock.now()
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(
            erasure_requests.c.id, erasure_requests.c.completed_at, erasure_requests.c.receipt)
            .where(erasure_requests.c.state == "done",
                   erasure_requests.c.completed_at >= now - RECEIPT_SCAN))).all()
        open_ = [r for r in rows if ((r.receipt or {}).get("delivery") or {}).get("message_id")
                 and not (r.receipt["delivery"].get("sealed_at"))]
        subjects = [receipt_subject(r.id) for r in open_]
        shredded = set((await conn.execute(sa.select(shredded_subjects.c.subject_id).where(
            shredded_subjects.c.subject_id.in_(subjects)))).scalars()) if subjects else set()
    sealed = 0
    messaging = kernel.service(MessagingService)
    for r in open_:
        delivery = dict(r.receipt["delivery"])
        subject = receipt_subject(r.id)
        status = delivery.get("status")
        if subject not in shredded:
            message = await messaging.get(str(delivery["message_id"]))
            status = str(message["status"]) if message else "deleted"
            waited_out = r.completed_at is not None and now - r.completed_at > RECEIPT_MAX_WAIT
            if status == "queued" and not waited_out:
                continue
            if status == "queued":
                status = "given up"
        async with kernel.db.transaction() as uow:
            await kernel.vault.shred(uow, subject, f"erasure receipt {r.id} {status}")
            await uow.execute(erasure_requests.update().where(
                erasure_requests.c.id == r.id).values(receipt={
                    **r.receipt, "delivery": {**delivery, "status": status,
                                              "sealed_at": now.isoformat()}}))
        sealed += 1
    return sealed
