"""The agent workspace: everything beside a case's conversation, and the actions in place.

Each panel is read through the owning feature's service and shown only when the agent's
role grants that feature's permission. A feature that is not installed shows "not
available" — the workspace never fills a gap with made-up data. Each action goes through
the owning feature's service (its checks, its audit) and is recorded on the case too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag

from kunde.access.models import Principal
from kunde.core.errors import Forbidden, KundeError
from kunde.kernel import Kernel
from kunde.service import models
from kunde.service.errors import CaseNotFound, InvalidCase, PeerUnavailable
from kunde.service.peers import enqueue_message, has, peer
from kunde.service.service import Actor, CaseService
from kunde.service.tables import service_activity, service_cases, service_messages
from kunde.store.database import UnitOfWork
from kunde.store.quick import Query
from kunde.store.tables import events

log = logging.getLogger("kunde.service.workspace")
PURPOSES = ("analytics", "personalisation", "marketing_email", "marketing_sms", "marketing_push")
TIMELINE = 25
ORDERS_SHOWN = 25
SHIPMENTS_SHOWN = 25
OTHER_CASES = 20

# Panel name -> the permission it needs (the owning feature's read permission).
PANEL_PERMISSIONS = {
    "profile": "profiles:read", "consents": "consent:read", "orders": "commerce:read",
    "shipments": "fulfilment:read", "loyalty": "loyalty:read", "scores": "personalisation:read",
    "timeline": "profiles:read", "cases": "service:cases",
}
ACTION_PERMISSIONS = {
    "refund": "commerce:write", "goodwill": "loyalty:goodwill",
    "start_return": "fulfilment:write", "resend_tracking": "fulfilment:write",
}


def panel(status: str, data: Any = None, note: str = "") -> dict[str, Any]:
    return {"status": status, "data": data, "note": note}


NOT_AVAILABLE = "not_available"


class Workspace:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.cases = kernel.service(CaseService)

    async def view(self, case_id: str, principal: Principal) -> dict[str, Any]:
        """The case, its thread and every panel the principal may see."""
        # Service's own data in one snapshot on the quick readers; peers' panels after it.
        own = await own_reads(self.kernel, case_id,
                              timeline=principal.can(PANEL_PERMISSIONS["timeline"]),
                              cases=principal.can(PANEL_PERMISSIONS["cases"]))
        case = own["case"]
        cid = case["customer_id"]
        loaders: dict[str, Callable[[str], Awaitable[dict[str, Any]]]] = {
            "profile": self._profile, "consents": self._consents, "orders": self._orders,
            "shipments": self._shipments, "loyalty": self._loyalty, "scores": self._scores,
        }
        panels: dict[str, dict[str, Any]] = {}
        todo = []
        for name in PANEL_PERMISSIONS:
            if not principal.can(PANEL_PERMISSIONS[name]):
                panels[name] = panel("not_permitted", note="your role does not include this")
            elif cid is None:
                panels[name] = panel("unverified", note="the contact is not verified")
            elif name in own:
                panels[name] = own[name]
            else:
                todo.append(name)
        if self.kernel.db.dialect == "postgresql":
            # Queries wait on the network: overlap them.
            results = list(await asyncio.gather(*(self._safe(loaders[n], cid) for n in todo)))
        else:
            # SQLite readers are threads competing for the GIL: overlapping only adds
            # hand-offs (measured: p50 26 ms one after another, 47 ms gathered).
            results = [await self._safe(loaders[n], cid) for n in todo]
        panels.update(zip(todo, results, strict=True))
        actions = {a: principal.can(p) and cid is not None
                   for a, p in ACTION_PERMISSIONS.items()}
        return {"case": case, "thread": own["thread"], "activity": own["activity"],
                "panels": {n: panels[n] for n in PANEL_PERMISSIONS}, "actions": actions}

    async def panels(self, customer_id: str | None, principal: Principal,
                     names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Only the named peer panels (profile, consents, orders, shipments, loyalty,
        scores), with the same permission rules as the whole view."""
        loaders: dict[str, Callable[[str], Awaitable[dict[str, Any]]]] = {
            "profile": self._profile, "consents": self._consents, "orders": self._orders,
            "shipments": self._shipments, "loyalty": self._loyalty, "scores": self._scores,
        }
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            if not principal.can(PANEL_PERMISSIONS[name]):
                out[name] = panel("not_permitted", note="your role does not include this")
            elif customer_id is None:
                out[name] = panel("unverified", note="the contact is not verified")
            else:
                out[name] = await self._safe(loaders[name], customer_id)
        return out

    async def _safe(self, loader: Callable[[str], Awaitable[dict[str, Any]]], cid: str
                    ) -> dict[str, Any]:
        try:
            return await loader(cid)
        except KundeError as exc:
            return panel(NOT_AVAILABLE, note=exc.detail)
        except Exception as exc:  # one broken feature must not take the workspace down
            log.warning("workspace panel failed: %r", exc)
            return panel(NOT_AVAILABLE, note="the owning feature did not answer")

    # -- panels ------------------------------------------------------------------------
    async def _profile(self, cid: str) -> dict[str, Any]:
        svc = peer(self.kernel, "profiles")
        if not has(svc, "get_profile"):
            return panel(NOT_AVAILABLE, note="profiles is not installed")
        assert svc is not None
        profile = await svc.get_profile(cid)
        data = {k: profile.get(k) for k in ("first_name", "last_name", "email", "phone",
                                             "locale", "created_at", "channel")}
        data["merged_ids"] = profile.get("merged_ids") or []
        data["identities"] = (await svc.identities(cid)) if has(svc, "identities") else []
        data["traits"] = profile.get("traits") or {}
        return panel("ok", data)

    async def _consents(self, cid: str) -> dict[str, Any]:
        svc = peer(self.kernel, "consent")
        if not has(svc, "is_allowed"):
            return panel(NOT_AVAILABLE, note="consent is not installed")
        assert svc is not None
        if has(svc, "state"):
            state = await svc.state(cid)
            return panel("ok", {p: bool(v.get("granted")) for p, v in state.items()})
        return panel("ok", {p: bool(await svc.is_allowed(cid, p)) for p in PURPOSES})

    async def _orders(self, cid: str) -> dict[str, Any]:
        svc = peer(self.kernel, "orders")
        if not has(svc, "list_orders"):
            return panel(NOT_AVAILABLE, note="commerce is not installed")
        assert svc is not None
        orders = list(await svc.list_orders(cid))
        return panel("ok", {"total": len(orders), "orders": orders[:ORDERS_SHOWN]})

    async def _shipments(self, cid: str) -> dict[str, Any]:
        svc = peer(self.kernel, "fulfilment")
        if not has(svc, "search"):
            return panel(NOT_AVAILABLE, note="fulfilment is not installed")
        assert svc is not None
        shipments = []
        for s in await svc.search(customer_ids=[cid], limit=SHIPMENTS_SHOWN):
            token = s.pop("token", None)
            if token and has(svc, "tracking_url"):
                s["tracking_url"] = svc.tracking_url(token)
            shipments.append(s)
        data: dict[str, Any] = {"shipments": shipments, "returns": []}
        returns = peer(self.kernel, "returns")
        if has(returns, "search"):
            assert returns is not None
            data["returns"] = list(await returns.search(customer_ids=[cid],
                                                        limit=SHIPMENTS_SHOWN))
        return panel("ok", data)

    async def _loyalty(self, cid: str) -> dict[str, Any]:
        svc = peer(self.kernel, "loyalty")
        if not has(svc, "member_summary"):
            return panel(NOT_AVAILABLE, note="loyalty is not installed")
        assert svc is not None
        return panel("ok", await svc.member_summary(cid))

    async def _scores(self, cid: str) -> dict[str, Any]:
        svc = peer(self.kernel, "scores")
        if not has(svc, "scores"):
            return panel(NOT_AVAILABLE, note="personalisation is not installed")
        assert svc is not None
        scores = await svc.scores(cid)
        if scores is None:
            return panel(NOT_AVAILABLE, note="no scores computed for this customer yet")
        return panel("ok", scores)

    # -- actions -----------------------------------------------------------------------
    async def act(self, case_id: str, principal: Principal, action: str,
                  params: dict[str, Any]) -> dict[str, Any]:
        """Run an action of the owning feature for the case's customer; audited on the case."""
        permission = ACTION_PERMISSIONS.get(action)
        if permission is None:
            raise InvalidCase(f"unknown action {action!r}", code="service.unknown_action")
        if not principal.can(permission):
            raise Forbidden(f"this action needs the permission {permission!r}",
                            code="auth.missing_permission", permission=permission)
        case = await self.cases.get_case(case_id)
        cid = case["customer_id"]
        if cid is None:
            raise InvalidCase("verify the case's contact before acting for a customer",
                              code="service.contact_unverified")
        actor = Actor("staff", principal.id, principal.name)
        key = str(params.get("idempotency_key") or "")
        if not key:
            raise InvalidCase("actions need an idempotency_key", code="service.no_idempotency_key")
        result = await getattr(self, f"_do_{action}")(case, cid, params, key)
        async with self.kernel.db.transaction() as uow:
            await self._record(uow, case_id, actor, action, params, result)
        return {"action": action, "result": result}

    async def _record(self, uow: UnitOfWork, case_id: str, actor: Actor, action: str,
                      params: dict[str, Any], result: Any) -> None:
        detail = {k: v for k, v in params.items() if k not in ("reason",)}
        await self.cases.audit(uow, case_id, actor, f"action:{action}", detail)
        summary = ", ".join(f"{k}={v}" for k, v in sorted(detail.items())
                            if k != "idempotency_key")
        await self.cases.add_message_in(uow, case_id, direction="note", channel="staff",
                                        actor=actor, body=f"Action {action}: {summary}")

    async def _do_refund(self, case: dict[str, Any], cid: str, p: dict[str, Any], key: str
                         ) -> Any:
        svc = peer(self.kernel, "orders")
        if not has(svc, "refund"):
            raise PeerUnavailable("refunds need the commerce feature")
        assert svc is not None
        return await svc.refund(str(p["order_id"]), int(p["amount_minor"]),
                                reason=str(p.get("reason") or f"service case {case['id']}"),
                                method=str(p.get("method") or "original"),
                                idempotency_key=f"service:{case['id']}:{key}")

    async def _do_goodwill(self, case: dict[str, Any], cid: str, p: dict[str, Any], key: str
                           ) -> Any:
        svc = peer(self.kernel, "loyalty")
        if not has(svc, "grant_goodwill"):
            raise PeerUnavailable("goodwill points need the loyalty feature")
        assert svc is not None
        points = int(p["points"])
        if points <= 0:
            raise InvalidCase("goodwill points must be positive", code="service.invalid_points")
        async with self.kernel.db.transaction() as uow:
            return await svc.grant_goodwill(uow, cid, points,
                                            str(p.get("reason") or "service goodwill"),
                                            f"service:{case['id']}:{key}")

    async def _do_start_return(self, case: dict[str, Any], cid: str, p: dict[str, Any],
                               key: str) -> Any:
        svc = peer(self.kernel, "returns")
        if not has(svc, "request"):
            raise PeerUnavailable("returns need the fulfilment feature")
        assert svc is not None
        lines = p.get("lines") or [{"line_id": p.get("line_id"),
                                    "quantity": int(p.get("quantity") or 1),
                                    "reason": p.get("return_reason") or "other"}]
        # Fulfilment checks the order is this customer's, the window and the quantities.
        return await svc.request(order_id=str(p["order_id"]), lines=list(lines),
                                 actor=f"service:{case['id']}", customer_id=cid)

    async def _do_resend_tracking(self, case: dict[str, Any], cid: str, p: dict[str, Any],
                                  key: str) -> Any:
        svc = peer(self.kernel, "fulfilment")
        if not has(svc, "get_shipment"):
            raise PeerUnavailable("tracking links need the fulfilment feature")
        assert svc is not None
        ship = await svc.get_shipment(str(p["shipment_id"]))
        if ship.get("customer_id") != cid:
            raise InvalidCase("this shipment belongs to another customer",
                              code="service.not_this_customer")
        # The link is fulfilment's; sending it is messaging's, with the template
        # fulfilment uses when the parcel ships.
        async with self.kernel.db.transaction() as uow:
            delivery = await enqueue_message(
                self.kernel, uow, customer_id=cid, template="shipped", purpose="transactional",
                idempotency_key=f"service-tracking:{case['id']}:{key}",
                context={"order_id": ship.get("order_id"),
                         "order_number": ship.get("order_number"),
                         "carrier": ship.get("carrier"),
                         "promised_date": ship.get("promised_date"),
                         "tracking_url": ship.get("tracking_url")})
        return {"shipment_id": ship.get("id"), "delivery": delivery}


# -- service's own part of the view: five indexed reads in one snapshot -------------------
# On the quick readers (compiled Core on the bare driver): through the asyncio layer the
# same reads cost a thread hop or greenlet switch each, more than the lookups themselves.
_ID: sa.BindParameter[str] = sa.bindparam("id", type_=sa.String)


def _literal(n: int) -> sa.ColumnElement[int]:
    """A LIMIT/OFFSET written into the statement: quick queries bind only named values."""
    return sa.literal_column(str(int(n)), sa.Integer)

Q_CASE = Query(sa.select(service_cases).where(service_cases.c.id == _ID))
Q_THREAD = Query(sa.select(service_messages).where(service_messages.c.case_id == _ID)
                 .order_by(service_messages.c.created_at, service_messages.c.id))
Q_ACTIVITY = Query(sa.select(service_activity).where(service_activity.c.case_id == _ID)
                   .order_by(service_activity.c.at))
Q_TIMELINE = Query(sa.select(events).where(events.c.subject_id == _ID)
                   .order_by(events.c.position.desc())
                   .limit(_literal(TIMELINE)).offset(_literal(0)))
Q_OTHER_CASES = Query(sa.select(
    service_cases.c.id, service_cases.c.vault_subject, service_cases.c.subject_enc,
    service_cases.c.status, service_cases.c.opened_at, service_cases.c.channel)
    .where(service_cases.c.customer_id == _ID)
    .order_by(service_cases.c.opened_at.desc()).limit(_literal(OTHER_CASES)).offset(_literal(0)))


class _ReadOnDemand:
    """Stands in for a connection where the vault needs a key it has not cached: reads
    it in a read transaction of its own (usually never called)."""

    def __init__(self, kernel: Kernel) -> None:
        self.db = kernel.db

    async def execute(self, statement: Any, params: Any = None) -> list[Any]:
        async with self.db.read() as conn:
            return list((await conn.execute(statement, params)).all())


async def own_reads(kernel: Kernel, case_id: str, *, timeline: bool, cases: bool
                    ) -> dict[str, Any]:
    """The case (as `CaseService.case_dict`), its thread, activity and — for a customer's
    case, when allowed — the recent timeline and the customer's cases, decrypted."""
    async with kernel.db.quick.session() as q:
        row = await q.fetch_one(Q_CASE, id=case_id)
        if row is None:
            raise CaseNotFound("no such case")
        messages = await q.fetch(Q_THREAD, id=case_id)
        activity = await q.fetch(Q_ACTIVITY, id=case_id)
        cid = row["customer_id"]
        recent = await q.fetch(Q_TIMELINE, id=cid) if cid and timeline else None
        others = await q.fetch(Q_OTHER_CASES, id=cid) if cid and cases else None
    vault = kernel.vault
    reader = UnitOfWork(cast(Any, _ReadOnDemand(kernel)), kernel.db.dialect)
    subjects = {row["vault_subject"], *(m["vault_subject"] for m in messages),
                *(c["vault_subject"] for c in others or ())}
    keys = await vault.keys_for(reader, subjects, create=False)

    def clear(subject: str, blob: bytes | None) -> str | None:
        key = keys.get(subject)
        if blob is None or key is None:
            return None
        try:
            return vault.open_(key, blob, subject.encode()).decode()
        except InvalidTag:
            return None

    case = {k: v for k, v in row.items()
            if k not in ("subject_enc", "contact_email_enc", "contact_email_index")}
    case["subject"] = clear(row["vault_subject"], row["subject_enc"])
    case["contact_email"] = clear(row["vault_subject"], row["contact_email_enc"])
    case["subject_tag"] = models.subject_tag(row["token"])
    out: dict[str, Any] = {"case": case, "activity": activity, "thread": [
        {"id": m["id"], "direction": m["direction"], "channel": m["channel"],
         "author_kind": m["author_kind"], "author_name": m["author_name"],
         "body": body if (body := clear(m["vault_subject"], m["body_enc"])) is not None
         else "(erased)", "delivery": m["delivery"], "created_at": m["created_at"]}
        for m in messages]}
    if recent is not None:
        decoded = await kernel.log.decode(cast(Any, _ReadOnDemand(kernel)),
                                          [SimpleNamespace(**r) for r in recent])
        out["timeline"] = panel("ok", [{"type": e.type, "at": e.occurred_at,
                                        "source": e.source, "payload": e.payload}
                                       for e in decoded])
    if others is not None:
        out["cases"] = panel("ok", [
            {"id": c["id"], "subject": clear(c["vault_subject"], c["subject_enc"]),
             "status": c["status"], "opened_at": c["opened_at"], "channel": c["channel"]}
            for c in others])
    return out
