"""Feedback at touchpoints: CSAT after a solved case, NPS after delivery or every N orders,
a review prompt after delivery — asked through messaging, answered once by a tokenised
link without log-in. Each answer is a ``service.feedback_given`` event; a detractor opens a
follow-up case when the policy says so.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kunde.core.clock import as_utc
from kunde.core.events import Event
from kunde.core.ids import derived_id
from kunde.kernel import Kernel
from kunde.service import keys, models
from kunde.service.errors import FeedbackAlreadyGiven, FeedbackLinkInvalid, InvalidCase
from kunde.service.peers import enqueue_message
from kunde.service.service import Actor, CaseService, NewCase
from kunde.service.tables import service_feedback
from kunde.store.database import UnitOfWork

TEMPLATES = {"csat": "service_csat_request", "nps": "service_nps_request",
             "review": "service_review_request"}
# CSAT belongs to the case the customer opened; NPS and review prompts are asks on our
# behalf, so messaging applies the customer's marketing consent and quiet hours to them.
PURPOSES = {"csat": "transactional", "nps": "marketing_email", "review": "marketing_email"}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class FeedbackService:
    def __init__(self, kernel: Kernel, policy: models.FeedbackPolicy = models.POLICY) -> None:
        self.kernel = kernel
        self.policy = policy

    async def request_in(self, uow: UnitOfWork, *, customer_id: str, kind: str,
                         touchpoint: str, cause: str, case_id: str | None = None,
                         order_id: str | None = None) -> str | None:
        """Ask once per cause, within the fatigue limits. Returns the link token, or None
        when not asked (already asked for this cause, or too soon after another survey)."""
        now = self.kernel.clock.now()
        last_any, last_nps = await self._last_asked(uow, customer_id)
        if not models.fatigue_allows(kind, now, last_any, last_nps, self.policy):
            return None
        token = secrets.token_urlsafe(24)
        feedback_id = derived_id("service.feedback", cause)
        # Once per cause across all customers (a merge may name another record).
        if not await keys.claim(uow, keys.feedback_cause(cause), feedback_id):
            return None
        await uow.execute(service_feedback.insert(), {
            "id": feedback_id, "token_hash": token_hash(token), "customer_id": customer_id,
            "touchpoint": touchpoint, "kind": kind, "cause": cause, "case_id": case_id,
            "order_id": order_id, "sent_at": now,
            "expires_at": now + timedelta(days=self.policy.link_valid_days)})
        url = f"{self.kernel.settings.effective_public_url}/feedback/{token}"
        delivery = await enqueue_message(
            self.kernel, uow, customer_id=customer_id, template=TEMPLATES[kind],
            purpose=PURPOSES[kind], idempotency_key=f"service-feedback:{feedback_id}",
            context={"feedback_url": url, "kind": kind, "case_id": case_id,
                     "order_id": order_id, "scale": list(models.SCALES[kind])})
        await uow.execute(service_feedback.update().where(
            service_feedback.c.customer_id == customer_id,
            service_feedback.c.id == feedback_id).values(delivery=delivery))
        return token

    async def _last_asked(self, uow: UnitOfWork, customer_id: str) -> tuple[Any, Any]:
        rows: list[Any] = list((await uow.execute(
            sa.select(service_feedback.c.kind, sa.func.max(service_feedback.c.sent_at))
            .where(service_feedback.c.customer_id == customer_id,
                   service_feedback.c.kind != "csat")
            .group_by(service_feedback.c.kind))).all())
        last = {str(r[0]): models_dt(r[1]) for r in rows}
        last_any = max(last.values()) if last else None
        return last_any, last.get("nps")

    async def lookup(self, token: str) -> dict[str, Any]:
        """The open question behind a link (for the answer page)."""
        async with self.kernel.db.read() as conn:
            row = (await conn.execute(sa.select(service_feedback).where(
                service_feedback.c.token_hash == token_hash(token)))).first()
        if row is None or models_dt(row.expires_at) < self.kernel.clock.now():
            raise FeedbackLinkInvalid("this feedback link is unknown or has expired")
        return {"id": row.id, "kind": row.kind, "touchpoint": row.touchpoint,
                "answered": row.answered_at is not None, "scale": models.SCALES[row.kind]}

    async def answer(self, token: str, score: int, comment: str = "",
                     kind: str | None = None) -> dict[str, Any]:
        """Record the answer of a link, once. ``kind``, when given, must be the link's own
        touchpoint kind: a CSAT link cannot answer an NPS question."""
        async with self.kernel.db.transaction() as uow:
            row = (await uow.execute(sa.select(service_feedback).where(
                service_feedback.c.token_hash == token_hash(token)))).first()
            now = self.kernel.clock.now()
            if row is None or models_dt(row.expires_at) < now:
                raise FeedbackLinkInvalid("this feedback link is unknown or has expired")
            if kind is not None and kind != row.kind:
                raise FeedbackLinkInvalid("this link answers another question")
            if not models.valid_score(row.kind, score):
                lo, hi = models.SCALES[row.kind]
                raise InvalidCase(f"the score must be between {lo} and {hi}",
                                  code="service.invalid_score")
            comment_enc = (await self.kernel.vault.encrypt_field(uow, row.customer_id,
                                                                 comment[:4000])
                           if comment.strip() else None)
            result = await uow.execute(service_feedback.update().where(
                service_feedback.c.customer_id == row.customer_id,
                service_feedback.c.id == row.id, service_feedback.c.answered_at.is_(None))
                .values(answered_at=now, score=score, comment_enc=comment_enc))
            if result.rowcount != 1:
                raise FeedbackAlreadyGiven("this feedback was given already; thank you")
            uow.emit(Event.new("service.feedback_given", {
                "touchpoint": row.touchpoint, "kind": row.kind, "score": score,
                "case_id": row.case_id, "order_id": row.order_id,
                "feedback_id": row.id, "has_comment": comment_enc is not None,
            }, subject_id=row.customer_id, source="email"))
            follow_up = None
            if self.policy.follow_up_detractors and models.is_detractor(row.kind, score):
                follow_up = await self._follow_up(uow, row, score, comment)
        return {"kind": row.kind, "score": score, "follow_up_case_id": follow_up}

    async def _follow_up(self, uow: UnitOfWork, row: Any, score: int, comment: str) -> str:
        cases = self.kernel.service(CaseService)
        label = "NPS" if row.kind == "nps" else "CSAT"
        case_id, _ = await cases.open_in(uow, NewCase(
            channel="system", subject=f"Follow up: {label} {score}", customer_id=row.customer_id,
            category="feedback", priority="high", order_id=row.order_id,
            cause=f"detractor:{row.id}", tags=("detractor", row.kind)))
        text = f"{label} answer {score}." + (f" Comment: {comment.strip()}" if comment.strip()
                                              else " No comment.")
        await cases.add_message_in(uow, case_id, direction="note", channel="staff",
                                   actor=Actor("system"), body=text)
        await uow.execute(service_feedback.update().where(
            service_feedback.c.customer_id == row.customer_id,
            service_feedback.c.id == row.id).values(follow_up_case_id=case_id))
        return case_id

    async def comments(self, kind: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest answers with a comment, newest first, for the report."""
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(service_feedback).where(
                service_feedback.c.kind == kind, service_feedback.c.comment_enc.is_not(None))
                .order_by(service_feedback.c.answered_at.desc()).limit(limit))).all()
            uow = UnitOfWork(conn, self.kernel.db.dialect)
            out = []
            for r in rows:
                text = await self.kernel.vault.decrypt_field(uow, r.customer_id, r.comment_enc)
                if text is not None:
                    out.append({"score": r.score, "comment": text, "at": r.answered_at,
                                "touchpoint": r.touchpoint})
            return out


def models_dt(value: Any) -> Any:
    return as_utc(value) if value is not None else None
