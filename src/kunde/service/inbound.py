"""Inbound email: thread a message onto its case, or open one, never on the wrong customer.

Threading order: a known ``In-Reply-To``/``References`` Message-ID, then the case token in
the subject (``[K-7F3A9C21]``) or the recipient (``case+7F3A9C21@…``). A threaded reply is
accepted only from an address of the case's own customer (or the case's own unverified
contact); anything else opens a separate case. Mail from an unknown address opens a case
with an unverified contact. Mail that is too large or cannot be parsed is kept whole, sealed,
in ``service_inbound_review`` — never dropped.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html import unescape
from typing import Any

import sqlalchemy as sa

from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.service import models
from kunde.service.peers import resolve_email
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.tables import service_cases, service_inbound_review, service_messages
from kunde.store.database import UnitOfWork

# Above this a mail is not threaded automatically but kept for a person to look at.
MAX_THREADED_BYTES = 1_048_576
# The SMTP server refuses anything larger outright (the sender gets a bounce).
MAX_ACCEPTED_BYTES = 32 * 1_048_576
MAX_BODY_CHARS = 50_000
_parser = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class ParsedMail:
    sender: str
    subject: str
    message_id: str | None
    references: list[str]
    body: str


class MalformedMail(Exception):
    pass


def parse_mail(raw: bytes) -> ParsedMail:
    """Headers and the readable text of a mail; raises `MalformedMail` when unusable."""
    fast = _parse_simple(raw)
    if fast is not None:
        return fast
    try:
        msg = _parser.parsebytes(raw)
        assert isinstance(msg, EmailMessage)
        sender = parseaddr(str(msg.get("From", "")))[1].strip()
        if not sender or "@" not in sender:
            raise MalformedMail("no usable From address")
        subject = str(msg.get("Subject", "")).strip()
        message_id = _msg_id(str(msg.get("Message-ID", "")))
        refs = _msg_ids(str(msg.get("In-Reply-To", ""))) + _msg_ids(str(msg.get("References", "")))
        part = msg.get_body(preferencelist=("plain", "html"))
        body = ""
        if part is not None:
            content = part.get_content()
            body = content if isinstance(content, str) else ""
            if part.get_content_subtype() == "html":
                body = _text_of_html(body)
    except MalformedMail:
        raise
    except Exception as exc:  # the email package raises many kinds on broken input
        raise MalformedMail(f"unparseable: {type(exc).__name__}: {exc}") from exc
    return _parsed(sender, subject, message_id, refs, body)


def _parsed(sender: str, subject: str, message_id: str | None, refs: list[str],
            body: str) -> ParsedMail:
    body = _strip_quoted(body).strip() or "(empty message)"
    return ParsedMail(sender=sender, subject=subject, message_id=message_id,
                      references=refs, body=body[:MAX_BODY_CHARS])


# Most mail is one text part with plain ASCII headers: read it without building the
# modern policy's header objects (most of the cost of `parse_mail`). Anything else —
# MIME parts, encoded words, folded or 8-bit headers, an unusual From — returns None
# and takes the full parse, so both paths give the same result.
_simple_parser = BytesParser(policy=policy.compat32)
_SIMPLE_FROM = re.compile(r"\s*(?:[A-Za-z0-9 .'_-]*<([^<>\s\"(),:;@]+@[A-Za-z0-9.-]+)>"
                          r"|([^<>\s\"(),:;@]+@[A-Za-z0-9.-]+))\s*")
_SIMPLE_HEADERS = ("From", "Subject", "Message-ID", "In-Reply-To", "References")


def _parse_simple(raw: bytes) -> ParsedMail | None:
    try:
        msg = _simple_parser.parsebytes(raw)
        if msg.is_multipart() or msg.get("Content-Disposition") is not None:
            return None
        kind = msg.get_content_type()
        if kind not in ("text/plain", "text/html"):
            return None
        values = []
        for name in _SIMPLE_HEADERS:
            value = msg.get(name, "")
            if not isinstance(value, str) or not value.isascii() or "=?" in value \
                    or "\n" in value or "\r" in value:
                return None
            values.append(value)
        sender_raw, subject, message_id, reply_to, references = values
        found = _SIMPLE_FROM.fullmatch(sender_raw)
        if found is None:
            return None
        payload = msg.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return None
        charset = msg.get_param("charset", "ASCII")
        if not isinstance(charset, str):
            return None
        body = payload.decode(charset, errors="replace")
    except Exception:
        return None  # the full parse decides what is wrong with it
    if kind == "text/html":
        body = _text_of_html(body)
    return _parsed((found.group(1) or found.group(2)).strip(), subject.strip(),
                   _msg_id(message_id), _msg_ids(reply_to) + _msg_ids(references), body)


_ID_RE = re.compile(r"<[^<>\s]+>")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _msg_ids(value: str) -> list[str]:
    return _ID_RE.findall(value or "")[:50]


def _msg_id(value: str) -> str | None:
    ids = _msg_ids(value)
    return ids[0][:255] if ids else None


def _text_of_html(html: str) -> str:
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", html)
    text = re.sub(r"(?i)<br\s*/?>|</p>", "\n", text)
    return unescape(re.sub(r"<[^>]+>", "", text))


def _strip_quoted(body: str) -> str:
    """Drop the quoted history under a reply, so the thread shows each message once."""
    lines = []
    for line in body.splitlines():
        if line.startswith(">"):
            continue
        if re.match(r"^On .+ wrote:\s*$", line) or line.strip() == "-- ":
            break
        lines.append(line)
    return "\n".join(lines)


BatchWork = Callable[[UnitOfWork, list[tuple["ParsedMail", list[str]]]],
                     Awaitable[list[dict[str, Any]]]]


class GroupCommit:
    """Commit mails that arrive together in one transaction (group commit).

    Each caller still gets its own result only after the transaction holding its mail
    committed. If a batch fails, its mails are retried one by one, so one bad mail
    never fails its neighbours.
    """

    def __init__(self, kernel: Kernel, work: BatchWork, max_batch: int = 64) -> None:
        self.kernel, self.work, self.max_batch = kernel, work, max_batch
        self._pending: list[tuple[ParsedMail, list[str], asyncio.Future[dict[str, Any]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, mail: ParsedMail, rcpts: list[str]) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append((mail, rcpts, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                async with self.kernel.db.transaction() as uow:
                    results = await self.work(uow, [(m, r) for m, r, _ in batch])
            except Exception:
                await self._one_by_one(batch)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _one_by_one(self, batch: list[tuple[ParsedMail, list[str],
                                                  asyncio.Future[dict[str, Any]]]]) -> None:
        for mail, rcpts, future in batch:
            try:
                async with self.kernel.db.transaction() as uow:
                    [result] = await self.work(uow, [(mail, rcpts)])
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
                continue
            if not future.done():
                future.set_result(result)


class InboundMailService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.cases = kernel.service(CaseService)
        self.commits = GroupCommit(kernel, self._thread_batch)

    async def receive(self, raw: bytes, mail_from: str = "", rcpt_tos: list[str] | None = None
                      ) -> dict[str, Any]:
        """Take one inbound mail; returns {outcome, case_id?}. Outcome: threaded | opened |
        duplicate | review."""
        rcpts = list(rcpt_tos or [])
        if len(raw) > MAX_THREADED_BYTES:
            return await self._review(raw, mail_from, f"oversized: {len(raw)} bytes")
        try:
            mail = parse_mail(raw)
        except MalformedMail as exc:
            return await self._review(raw, mail_from, f"malformed: {exc}"[:200])
        return await self.commits.submit(mail, rcpts)

    async def _thread_batch(self, uow: UnitOfWork, items: list[tuple[ParsedMail, list[str]]]
                            ) -> list[dict[str, Any]]:
        from kunde.service.inbound_batch import thread_batch

        return await thread_batch(self, uow, items)

    async def _thread(self, uow: UnitOfWork, mail: ParsedMail, rcpts: list[str]
                      ) -> dict[str, Any]:
        known = await self._known_ids(uow, mail)
        if mail.message_id and mail.message_id in known:
            return {"outcome": "duplicate", "case_id": known[mail.message_id]}
        sender_index = self.kernel.vault.blind_index("email", mail.sender)
        case = await self._threaded_case(uow, mail, rcpts, known)
        if case is not None and case.contact_email_index == sender_index:
            # The case's own contact address: who it belongs to is already settled.
            customer_id = case.customer_id
        else:
            customer_id = await resolve_email(self.kernel, mail.sender)
        related = None
        if case is not None and not self._sender_may_write(case, customer_id, sender_index):
            related, case = case.id, None
        if case is None and customer_id is None:
            # A known-unknown sender writing again continues their open unverified case.
            case = (await uow.execute(sa.select(service_cases).where(
                service_cases.c.contact_email_index == sender_index,
                service_cases.c.contact_verified.is_(False),
                service_cases.c.status.in_(models.OPEN_STATUSES)).order_by(
                    service_cases.c.opened_at.desc()).limit(1))).first()
        outcome = "threaded"
        if case is None:
            tags = ["unverified-contact"] if customer_id is None else []
            if related:
                tags.append("claimed-reply")
            case_id, _ = await self.cases.open_in(uow, NewCase(
                channel="email", subject=models.strip_subject(mail.subject),
                customer_id=customer_id, contact_email=mail.sender, tags=tags))
            if related:
                await self.cases.audit(uow, case_id, Actor("system"), "claimed_reply",
                                       {"claimed_case_id": related})
            outcome = "opened"
        else:
            case_id = case.id
        actor = Actor("customer" if customer_id else "contact", customer_id, "email")
        await self.cases.add_message_in(
            uow, case_id, direction="in", channel="email", actor=actor, body=mail.body,
            email_message_id=mail.message_id or f"<{new_id()}{models.SYNTHETIC_ID_SUFFIX}",
            case=case if outcome == "threaded" else None)
        return {"outcome": outcome, "case_id": case_id}

    async def _known_ids(self, uow: UnitOfWork, mail: ParsedMail) -> dict[str, str]:
        """Message-IDs (and messaging ids) of this mail and its references already on a
        case, in one query: {message id or "queued:<id>": case id}."""
        ids = ([mail.message_id] if mail.message_id else []) + mail.references
        if not ids:
            return {}
        # Our replies leave through messaging, whose Message-ID embeds its message id.
        sent = [f"queued:{u}" for ref in mail.references for u in _UUID_RE.findall(ref)]
        cond: sa.ColumnElement[bool] = service_messages.c.email_message_id.in_(ids)
        if sent:
            cond = sa.or_(cond, service_messages.c.delivery.in_(sent))
        rows = await uow.execute(sa.select(service_messages.c.case_id,
                                           service_messages.c.email_message_id,
                                           service_messages.c.delivery).where(cond).limit(50))
        out: dict[str, str] = {}
        for r in rows:
            if r.email_message_id in ids:
                out[r.email_message_id] = r.case_id
            if r.delivery in sent:
                out[r.delivery] = r.case_id
        return out

    async def _threaded_case(self, uow: UnitOfWork, mail: ParsedMail, rcpts: list[str],
                             known: dict[str, str]) -> Any | None:
        case_id = next((v for k, v in known.items() if k != mail.message_id), None)
        q = sa.select(service_cases)
        if case_id:
            q = q.where(service_cases.c.id == case_id)
        else:
            token = models.token_in(mail.subject, rcpts)
            if not token:
                return None
            q = q.where(service_cases.c.token == token)
        if uow.dialect == "postgresql":
            q = q.with_for_update()
        row = (await uow.execute(q)).first()
        if row is None or row.status == "closed":
            return None
        return row

    @staticmethod
    def _sender_may_write(case: Any, customer_id: str | None, sender_index: str) -> bool:
        if case.customer_id:
            return customer_id == case.customer_id or (
                customer_id is None and case.contact_email_index == sender_index)
        return customer_id is None and case.contact_email_index == sender_index

    async def _review(self, raw: bytes, mail_from: str, reason: str) -> dict[str, Any]:
        review_id = new_id()
        sender = parseaddr(mail_from)[1] or first_from(raw)
        async with self.kernel.db.transaction() as uow:
            vault = self.kernel.vault
            keys = await vault.keys_for(uow, [review_id], create=True)
            await uow.execute(service_inbound_review.insert().values(
                id=review_id, received_at=self.kernel.clock.now(), reason=reason,
                size=len(raw), raw_enc=vault.seal(keys[review_id], raw, review_id.encode()),
                mail_from_index=vault.blind_index("email", sender) if sender else None))
        return {"outcome": "review", "review_id": review_id, "reason": reason}

    async def review_items(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.kernel.db.read() as conn:
            rows = await conn.execute(sa.select(
                service_inbound_review.c.id, service_inbound_review.c.received_at,
                service_inbound_review.c.reason, service_inbound_review.c.size,
                service_inbound_review.c.resolved_at).order_by(
                    service_inbound_review.c.received_at.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    async def review_raw(self, review_id: str) -> bytes | None:
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(service_inbound_review.c.raw_enc).where(
                service_inbound_review.c.id == review_id))).first()
            if row is None:
                return None
            uow = UnitOfWork(conn, self.kernel.db.dialect)
            keys = await self.kernel.vault.keys_for(uow, [review_id], create=False)
        key = keys.get(review_id)
        return self.kernel.vault.open_(key, row.raw_enc, review_id.encode()) if key else None


def first_from(raw: bytes) -> str:
    """The first From address in a raw mail's headers, even one too broken to parse."""
    head = raw[:16_384].decode("latin-1", "replace")
    m = re.search(r"(?im)^from:(.*)$", head)
    if not m:
        return ""
    addrs = getaddresses([m.group(1)])
    return addrs[0][1] if addrs else ""
