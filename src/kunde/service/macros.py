"""Macros: reply templates per locale with ``$variables``, suggested by case category."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from kunde.core.ids import derived_id
from kunde.kernel import Kernel
from kunde.service import models
from kunde.service.errors import InvalidCase
from kunde.service.tables import service_macros
from kunde.store.sql import upsert

DEFAULT_MACROS: list[tuple[str, str, str, str, str]] = [
    # key, locale, category, title, body
    ("delay-apology", "en", "delivery", "Apologise for a late delivery",
     "Hello $first_name,\n\nI am sorry your parcel is late. It is on its way and you can "
     "follow it here: $tracking_url\n\nKind regards,\n$agent_name"),
    ("delay-apology", "de", "delivery", "Entschuldigung für eine späte Lieferung",
     "Hallo $first_name,\n\nes tut mir leid, dass Ihr Paket später kommt. Sie können es hier "
     "verfolgen: $tracking_url\n\nViele Grüße\n$agent_name"),
    ("refund-confirmed", "en", "refund", "Confirm a refund",
     "Hello $first_name,\n\nyour refund for order $order_number is on its way; it shows on "
     "your statement within a few days.\n\nKind regards,\n$agent_name"),
    ("return-howto", "en", "return", "How to return an item",
     "Hello $first_name,\n\nyou can start a return in your account: $portal_url\n\n"
     "Kind regards,\n$agent_name"),
    ("vip-checkin", "en", "vip", "Personal check-in for a VIP",
     "Hello $first_name,\n\nthank you for being one of our best customers. Is there anything "
     "we can do better for you?\n\nKind regards,\n$agent_name"),
    ("general-thanks", "en", "general", "Thank you for getting in touch",
     "Hello $first_name,\n\nthank you for your message (case $case_number). \n\n"
     "Kind regards,\n$agent_name"),
    ("feedback-sorry", "en", "feedback", "Follow up on low feedback",
     "Hello $first_name,\n\nthank you for your honest feedback. I would like to understand "
     "what went wrong and put it right.\n\nKind regards,\n$agent_name"),
]


class MacroService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._seeded = False

    async def save(self, key: str, locale: str, category: str, title: str, body: str) -> str:
        if not key or not body.strip():
            raise InvalidCase("a macro needs a key and a body", code="service.invalid_macro")
        macro_id = derived_id("service.macro", key, locale)
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, service_macros, ["key", "locale"],
                                     ["title", "category", "body", "updated_at"]),
                              {"id": macro_id, "key": key, "locale": locale,
                               "category": category, "title": title, "body": body,
                               "updated_at": self.kernel.clock.now()})
        return macro_id

    async def ensure_defaults(self) -> None:
        async with self.kernel.db.read() as conn:
            have = (await conn.execute(sa.select(sa.func.count()).select_from(
                service_macros))).scalar_one()
        if not have:
            for key, locale, category, title, body in DEFAULT_MACROS:
                await self.save(key, locale, category, title, body)

    async def list_all(self) -> list[dict[str, Any]]:
        """Every macro; a fresh installation gets the built-in ones on first use."""
        for _ in range(2):
            async with self.kernel.db.read() as conn:
                rows = (await conn.execute(sa.select(service_macros).order_by(
                    service_macros.c.category, service_macros.c.key,
                    service_macros.c.locale))).all()
            if rows or self._seeded:
                break
            self._seeded = True
            await self.ensure_defaults()
        return [dict(r._mapping) for r in rows]

    async def suggest(self, category: str, locale: str | None) -> list[dict[str, Any]]:
        """Macros for the case's category first (each in the best locale), then general ones."""
        by_key: dict[str, dict[str, dict[str, Any]]] = {}
        for m in await self.list_all():
            by_key.setdefault(m["key"], {})[m["locale"]] = m
        picked = []
        for variants in by_key.values():
            loc = models.pick_macro_locale(list(variants), locale)
            if loc:
                picked.append(variants[loc])
        picked.sort(key=lambda m: (m["category"] != category, m["category"] != "general",
                                   m["key"]))
        return picked

    @staticmethod
    def render(body: str, variables: dict[str, str]) -> str:
        return models.render_macro(body, variables)
