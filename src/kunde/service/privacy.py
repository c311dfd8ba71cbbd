"""GDPR hooks of the service feature: export what we hold about a customer, and erase it.

Erasure deletes the conversation and pseudonymises cases and feedback scores, so reports
keep their counts without a way back to the person (the vault shreds the key as well).

Cases of an *unverified contact* (mail from an address no customer had) belong to nobody
yet, so they are found by address: the erase hook takes those from the addresses the
customer wrote to service from, and the consumer of ``privacy.customer_erased`` takes those
from any address on the suppression list (every identifier of the erased person). Their
conversation is deleted, the case pseudonymised and its own key shredded; inbound mail
kept for review from those addresses goes as well.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from kunde.core.events import Event
from kunde.core.ids import derived_id, new_id
from kunde.kernel import Kernel
from kunde.service import keys
from kunde.service.inbound import first_from
from kunde.service.peers import customer_emails
from kunde.service.service import CaseService
from kunde.service.tables import (
    service_activity,
    service_cases,
    service_feedback,
    service_inbound_review,
)
from kunde.store.database import UnitOfWork

log = logging.getLogger("kunde.service")
ERASED_CONTACT_TAG = "contact-erased"


async def export(kernel: Kernel, customer_ids: Sequence[str]) -> dict[str, Any]:
    cases = kernel.service(CaseService)
    out_cases = []
    for cid in customer_ids:
        for case in await cases.list_cases(customer_id=cid, limit=500):
            thread = [m for m in await cases.thread(case["id"]) if m["direction"] != "note"]
            out_cases.append({
                "id": case["id"], "reference": case["subject_tag"], "subject": case["subject"],
                "status": case["status"], "channel": case["channel"],
                "opened_at": case["opened_at"].isoformat(),
                "messages": [{"direction": m["direction"], "channel": m["channel"],
                              "body": m["body"], "at": m["created_at"].isoformat()}
                             for m in thread]})
    out_cases += await _contact_cases(kernel, customer_ids)
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(service_feedback).where(
            service_feedback.c.customer_id.in_(list(customer_ids))))).all()
        uow = UnitOfWork(conn, kernel.db.dialect)
        feedback = []
        for r in rows:
            feedback.append({
                "kind": r.kind, "touchpoint": r.touchpoint, "sent_at": r.sent_at.isoformat(),
                "score": r.score, "answered_at": r.answered_at.isoformat()
                if r.answered_at else None,
                "comment": await kernel.vault.decrypt_field(uow, r.customer_id, r.comment_enc)})
    return {"cases": out_cases, "feedback": feedback}


async def erase(kernel: Kernel, uow: UnitOfWork, customer_ids: Sequence[str]) -> dict[str, int]:
    ids = list(customer_ids)
    own = (await uow.execute(sa.select(service_cases.c.id, service_cases.c.contact_email_index)
                             .where(service_cases.c.customer_id.in_(ids)))).all()
    case_ids = [r.id for r in own]
    # The addresses they wrote from may also have opened cases before they were known.
    indexes = {r.contact_email_index for r in own if r.contact_email_index}
    contacts = await forget_contacts(kernel, uow, indexes, "erasure of the customer")
    messages = 0
    if case_ids:
        messages = await keys.delete_messages(uow, case_ids)
        await uow.execute(service_cases.update().where(service_cases.c.id.in_(case_ids)).values(
            customer_id=None, vault_subject=service_cases.c.id, subject_enc=None,
            contact_email_enc=None, contact_email_index=None, tags=[]))
    feedback = 0
    for cid in ids:
        feedback += await _pseudonymise_feedback(uow, cid)
    return {"service_cases_pseudonymised": len(case_ids), "service_messages_deleted": messages,
            "service_feedback_pseudonymised": feedback,
            "service_contact_cases_erased": contacts["cases"],
            "service_inbound_review_deleted": contacts["review"]}


async def _pseudonymise_feedback(uow: UnitOfWork, customer_id: str) -> int:
    """Move the customer's feedback to a pseudonym, without the comments: copied under
    the pseudonym, then deleted (a sharded table's distribution column is never updated
    in place). Returns how many answers moved."""
    t = service_feedback
    kept = [c for c in t.c if c.name not in ("customer_id", "comment_enc")]
    copy = sa.select(sa.literal(derived_id("service.erased", customer_id), sa.String(36)),
                     sa.cast(sa.null(), sa.LargeBinary), *kept).where(
        t.c.customer_id == customer_id)
    await uow.execute(t.insert().from_select(
        ["customer_id", "comment_enc", *(c.name for c in kept)], copy))
    return int((await uow.execute(t.delete().where(t.c.customer_id == customer_id))).rowcount)


async def _contact_cases(kernel: Kernel, customer_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Cases still under an unverified contact that wrote from one of the customer's
    addresses: theirs as well, for an access request."""
    indexes = set()
    for cid in customer_ids:
        indexes |= {kernel.vault.blind_index("email", e)
                    for e in await customer_emails(kernel, cid)}
    if not indexes:
        return []
    cases = kernel.service(CaseService)
    async with kernel.db.read() as conn:
        rows = (await conn.execute(sa.select(service_cases.c.id).where(
            service_cases.c.contact_verified.is_(False),
            service_cases.c.contact_email_index.in_(sorted(indexes))))).all()
    out = []
    for r in rows:
        case = await cases.get_case(r.id)
        thread = [m for m in await cases.thread(r.id) if m["direction"] != "note"]
        out.append({
            "id": case["id"], "reference": case["subject_tag"], "subject": case["subject"],
            "status": case["status"], "channel": case["channel"], "contact_verified": False,
            "contact_email": case["contact_email"], "opened_at": case["opened_at"].isoformat(),
            "messages": [{"direction": m["direction"], "channel": m["channel"],
                          "body": m["body"], "at": m["created_at"].isoformat()}
                         for m in thread]})
    return out


async def forget_contacts(kernel: Kernel, uow: UnitOfWork, email_indexes: set[str],
                          reason: str, *, before: datetime | None = None) -> dict[str, int]:
    """Erase the cases of unverified contacts with these address indexes (blind indexes of
    ``email``) and the mail kept for review from them; only what arrived before ``before``
    when given. Returns {cases, review}."""
    if not email_indexes:
        return {"cases": 0, "review": 0}
    q = sa.select(service_cases.c.id, service_cases.c.vault_subject).where(
        service_cases.c.contact_verified.is_(False),
        service_cases.c.contact_email_index.in_(sorted(email_indexes)))
    r = sa.select(service_inbound_review.c.id).where(
        service_inbound_review.c.mail_from_index.in_(sorted(email_indexes)))
    if before is not None:
        q = q.where(service_cases.c.opened_at <= before)
        r = r.where(service_inbound_review.c.received_at <= before)
    cases = (await uow.execute(q)).all()
    reviews = [row.id for row in await uow.execute(r)]
    await erase_contact_cases(kernel, uow, cases, reason)
    await _forget_review(kernel, uow, reviews, reason)
    return {"cases": len(cases), "review": len(reviews)}


async def erase_contact_cases(kernel: Kernel, uow: UnitOfWork, cases: Sequence[Any],
                              reason: str) -> None:
    """Delete the conversation of these unverified-contact cases (rows with ``id`` and
    ``vault_subject``), pseudonymise the cases and shred their own keys."""
    if not cases:
        return
    case_ids = [str(c.id) for c in cases]
    await keys.delete_messages(uow, case_ids)
    await uow.execute(service_cases.update().where(service_cases.c.id.in_(case_ids)).values(
        subject_enc=None, contact_email_enc=None, contact_email_index=None,
        tags=[ERASED_CONTACT_TAG]))
    now = kernel.clock.now()
    await uow.execute(service_activity.insert(), [
        {"id": new_id(), "case_id": cid, "at": now, "actor": "system:privacy",
         "action": "contact_erased", "detail": {}} for cid in case_ids])
    for c in cases:
        await kernel.vault.shred(uow, str(c.vault_subject), reason)


async def _forget_review(kernel: Kernel, uow: UnitOfWork, review_ids: list[str],
                         reason: str) -> None:
    if not review_ids:
        return
    await uow.execute(service_inbound_review.delete().where(
        service_inbound_review.c.id.in_(review_ids)))
    for rid in review_ids:
        await kernel.vault.shred(uow, rid, reason)


async def forget_suppressed_contacts(kernel: Kernel, uow: UnitOfWork,
                                     events: Sequence[Event]) -> None:
    """Consumer of ``privacy.customer_erased``: erase unverified-contact cases and review
    mail whose sender address is now on the suppression list, opened before the erasure
    (someone writing in again later is a new conversation)."""
    from kunde.privacy.suppression import SuppressionService

    if not events:
        return
    before = max(e.occurred_at for e in events)
    # A fresh instance reads the list now, not a copy cached up to seconds ago.
    suppressed = SuppressionService(kernel)
    if not await suppressed.active():
        return
    vault = kernel.vault
    rows = (await uow.execute(sa.select(
        service_cases.c.id, service_cases.c.vault_subject, service_cases.c.contact_email_enc)
        .where(service_cases.c.contact_verified.is_(False),
               service_cases.c.contact_email_enc.is_not(None),
               service_cases.c.opened_at <= before))).all()
    keys: dict[str, bytes] = {}
    for i in range(0, len(rows), 500):
        keys.update(await vault.keys_for(
            uow, {str(r.vault_subject) for r in rows[i:i + 500]}, create=False))
    erased = []
    for row in rows:
        key = keys.get(str(row.vault_subject))
        if key is None:
            continue
        try:
            address = vault.open_(key, row.contact_email_enc,
                                  str(row.vault_subject).encode()).decode()
        except InvalidTag:  # unreadable: nothing to match, nothing to erase here
            continue
        if await suppressed.is_suppressed("email", address):
            erased.append(row)
    await erase_contact_cases(kernel, uow, erased, "contact address erased")
    reviews = (await uow.execute(sa.select(service_inbound_review.c.id,
                                           service_inbound_review.c.raw_enc).where(
        service_inbound_review.c.received_at <= before))).all()
    keys = await vault.keys_for(uow, [r.id for r in reviews], create=False)
    gone = []
    for rv in reviews:
        key = keys.get(rv.id)
        if key is None:
            continue
        try:
            raw = vault.open_(key, rv.raw_enc, rv.id.encode())
        except InvalidTag:
            continue
        if await suppressed.is_suppressed("email", first_from(raw)):
            gone.append(rv.id)
    await _forget_review(kernel, uow, gone, "sender address erased")
    if erased or gone:
        log.info("erased %d unverified-contact cases and %d review mails of erased addresses",
                 len(erased), len(gone))


async def purge(kernel: Kernel, uow: UnitOfWork, data_class: str, cutoff: datetime,
                held: frozenset[str]) -> int:
    """Retention of ``cases``: solved or closed cases untouched since ``cutoff`` go with their
    messages and activity, except cases of customers under a legal hold; returns cases."""
    if data_class != "cases":
        return 0
    q = sa.select(service_cases.c.id).where(service_cases.c.updated_at < cutoff,
                                             service_cases.c.status.in_(("solved", "closed")))
    if held:
        q = q.where(sa.or_(service_cases.c.customer_id.is_(None),
                           service_cases.c.customer_id.not_in(sorted(held))))
    purged = 0
    while case_ids := [str(r.id) for r in await uow.execute(q.limit(500))]:
        await keys.delete_messages(uow, case_ids)
        await uow.execute(service_activity.delete().where(
            service_activity.c.case_id.in_(case_ids)))
        await uow.execute(service_feedback.update().where(
            service_feedback.c.case_id.in_(case_ids)).values(case_id=None))
        gone = (await uow.execute(service_cases.delete().where(
            service_cases.c.id.in_(case_ids)).returning(
                service_cases.c.token, service_cases.c.cause))).all()
        await keys.release(uow, [keys.case_token(g.token) for g in gone]
                           + [keys.case_cause(g.cause) for g in gone if g.cause])
        purged += len(gone)
    return purged
