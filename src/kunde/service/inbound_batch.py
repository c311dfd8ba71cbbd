"""Threading a batch of inbound mails with a handful of statements instead of a handful
per mail (the group commit's work).

The common case — a reply from the case's own contact address to an open case, found by
its references or token — is handled set-wise: one lookup of the known Message-IDs with their
cases, one insert of all messages, one update of the cases touched. Anything else
(a new case, another sender, a duplicate) goes through `InboundMailService._thread`, after
the rows gathered so far are written, so it sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kunde.core.events import Event
from kunde.core.ids import new_id
from kunde.service import keys, models
from kunde.service.service import SNIPPET
from kunde.service.tables import service_cases, service_messages
from kunde.store.database import UnitOfWork

if TYPE_CHECKING:
    from kunde.service.inbound import InboundMailService, ParsedMail


class _Pending:
    """Messages and case changes of the fast path, written together."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.cases: dict[str, dict[str, Any]] = {}
        self.events: list[Event] = []

    async def flush(self, uow: UnitOfWork) -> None:
        if self.messages:
            await uow.execute(_INSERT_MESSAGES, self.messages)
            await keys.add(uow, [(keys.email(m["email_message_id"]), m["id"])
                                 for m in self.messages if m["email_message_id"]])
        if self.cases:
            await uow.execute(_UPDATE_CASES, list(self.cases.values()))
        for e in self.events:
            uow.emit(e)
        self.messages, self.cases, self.events = [], {}, []


async def thread_batch(svc: InboundMailService, uow: UnitOfWork,
                       items: list[tuple[ParsedMail, list[str]]]) -> list[dict[str, Any]]:
    kernel = svc.kernel
    now = kernel.clock.now()
    known, cases = await _lookup(uow, items)
    pending = _Pending()
    seen: set[str] = set()
    results: list[dict[str, Any]] = []
    for mail, rcpts in items:
        case = _fast_case(kernel, mail, rcpts, known, cases, seen)
        if case is None:
            await pending.flush(uow)
            results.append(await svc._thread(uow, mail, rcpts))
            cases.clear()  # the slow path may have changed them: read again next time
            continue
        if mail.message_id:
            seen.add(mail.message_id)
        message_id = new_id()
        pending.messages.append({
            "id": message_id, "case_id": case.id, "direction": "in", "channel": "email",
            "author_kind": "customer" if case.customer_id else "contact",
            "author_id": case.customer_id, "author_name": "email",
            "vault_subject": case.vault_subject,
            "body_enc": await kernel.vault.encrypt_field(uow, case.vault_subject, mail.body),
            "email_message_id": mail.message_id, "delivery": None, "created_at": now})
        before = pending.cases.get(case.id, {}).get("b_status", case.status)
        pending.cases[case.id] = {
            "b_id": case.id, "b_status": models.status_after_message(before, "in"),
            "b_solved": None if before == "solved" else case.solved_at, "b_at": now}
        if case.customer_id:
            pending.events.append(Event.new("service.message_added", {
                "case_id": case.id, "message_id": message_id, "direction": "in",
                "channel": "email", "author": "customer", "snippet": mail.body[:SNIPPET],
            }, subject_id=case.customer_id, source="email"))
        results.append({"outcome": "threaded", "case_id": case.id})
    await pending.flush(uow)
    return results


def _fast_case(kernel: Any, mail: ParsedMail, rcpts: list[str], known: dict[str, str],
               cases: dict[str, Any], seen: set[str]) -> Any | None:
    """The case this mail continues when nothing about it needs a closer look."""
    if not mail.message_id or mail.message_id in known or mail.message_id in seen:
        return None
    case_id = next((known[r] for r in mail.references if r in known), None)
    case = cases.get(case_id) if case_id else None
    if case is None and case_id is None:
        token = models.token_in(mail.subject, rcpts)
        case = cases.get(f"token:{token}") if token else None
    if case is None or case.status == "closed":
        return None
    if case.contact_email_index != kernel.vault.blind_index("email", mail.sender):
        return None
    return case


def _lookup_statement() -> sa.Select[Any]:
    m = service_messages
    ids: sa.BindParameter[Any] = sa.bindparam("ids", expanding=True)
    return (sa.select(service_cases, m.c.email_message_id.label("known_message_id"))
            .select_from(service_cases.outerjoin(m, sa.and_(
                m.c.email_message_id.in_(ids), m.c.case_id == service_cases.c.id)))
            .where(sa.or_(service_cases.c.id.in_(
                sa.select(m.c.case_id).where(m.c.email_message_id.in_(ids))
                .scalar_subquery()),
                service_cases.c.token.in_(sa.bindparam("tokens", expanding=True)))))


# Built once: building a statement of this size costs more than running it.
_LOOKUP = _lookup_statement()
_LOOKUP_LOCKED = _LOOKUP.with_for_update(of=service_cases)
_UPDATE_CASES = (
    service_cases.update().where(service_cases.c.id == sa.bindparam("b_id"))
    .values(status=sa.bindparam("b_status"), solved_at=sa.bindparam("b_solved"),
            updated_at=sa.bindparam("b_at"), last_message_at=sa.bindparam("b_at")))
_INSERT_MESSAGES = service_messages.insert()


async def _lookup(uow: UnitOfWork, items: list[tuple[ParsedMail, list[str]]]
                  ) -> tuple[dict[str, str], dict[str, Any]]:
    """In one statement: the batch's Message-IDs (own and referenced) already on a case,
    {message id: case id}, and the cases they or the batch's tokens name, by id and by
    ``token:TOKEN`` (locked on PostgreSQL)."""
    ids = list({i for m, _ in items
                for i in ([m.message_id] if m.message_id else []) + m.references})
    tokens = list({t for m, r in items if (t := models.token_in(m.subject, r))})
    if not ids and not tokens:
        return {}, {}
    q = _LOOKUP_LOCKED if uow.dialect == "postgresql" else _LOOKUP
    known: dict[str, str] = {}
    cases: dict[str, Any] = {}
    for row in await uow.execute(q, {"ids": ids, "tokens": tokens}):
        if row.known_message_id is not None:
            known[row.known_message_id] = row.id
        cases[row.id] = row
        cases[f"token:{row.token}"] = row
    return known, cases
