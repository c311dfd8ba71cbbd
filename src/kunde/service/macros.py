"""Macros: reply templates per locale with ``$variables``, suggested by case category."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from kunde.core.ids import derived_id
from kunde.kernel import Kernel
from kunde.service import models
from kunde.service.errors import InvalidCase
from kunde.service.tables import service_macros
from kunde.store.sql import insert_ignore, upsert

DEFAULT_MACROS: list[tuple[str, str, str, str, str]] = [
    # key, locale, category, title, body
    ("delay-apology", "en", "delivery", "Apologise for a late delivery",
     "Hello $first_name,\n\nI am sorry your parcel is late. It is on its way and you can "
     "follow it here: $tracking_url\n\nKind regards,\n$agent_name"),
    ("delay-apology", "da", "delivery", "Undskyld en forsinket levering",
     "Hej $first_name,\n\ndet beklager jeg, at din pakke er forsinket. Den er på vej, og du "
     "kan følge den her: $tracking_url\n\nVenlig hilsen\n$agent_name"),
    ("delay-apology", "de", "delivery", "Entschuldigung für eine späte Lieferung",
     "Hallo $first_name,\n\nes tut mir leid, dass Ihr Paket später kommt. Sie können es hier "
     "verfolgen: $tracking_url\n\nViele Grüße\n$agent_name"),
    ("delay-apology", "nl", "delivery", "Excuses voor een late levering",
     "Hallo $first_name,\n\nhet spijt me dat je pakket later komt. Het is onderweg en je kunt "
     "het hier volgen: $tracking_url\n\nMet vriendelijke groet,\n$agent_name"),
    ("refund-confirmed", "en", "refund", "Confirm a refund",
     "Hello $first_name,\n\nyour refund for order $order_number is on its way; it shows on "
     "your statement within a few days.\n\nKind regards,\n$agent_name"),
    ("refund-confirmed", "da", "refund", "Bekræft en refusion",
     "Hej $first_name,\n\ndin refusion for ordre $order_number er på vej; den står på din "
     "kontoudskrift inden for få dage.\n\nVenlig hilsen\n$agent_name"),
    ("refund-confirmed", "de", "refund", "Erstattung bestätigen",
     "Hallo $first_name,\n\nIhre Erstattung für die Bestellung $order_number ist unterwegs; "
     "sie erscheint in wenigen Tagen auf Ihrem Kontoauszug.\n\nViele Grüße\n$agent_name"),
    ("refund-confirmed", "nl", "refund", "Terugbetaling bevestigen",
     "Hallo $first_name,\n\nje terugbetaling voor bestelling $order_number is onderweg; je "
     "ziet haar binnen een paar dagen op je afschrift.\n\nMet vriendelijke groet,\n"
     "$agent_name"),
    ("return-howto", "en", "return", "How to return an item",
     "Hello $first_name,\n\nyou can start a return in your account: $portal_url\n\n"
     "Kind regards,\n$agent_name"),
    ("return-howto", "da", "return", "Sådan returnerer du en vare",
     "Hej $first_name,\n\ndu kan starte en returnering på din konto: $portal_url\n\n"
     "Venlig hilsen\n$agent_name"),
    ("return-howto", "de", "return", "So senden Sie einen Artikel zurück",
     "Hallo $first_name,\n\nSie können eine Rücksendung in Ihrem Konto starten: "
     "$portal_url\n\nViele Grüße\n$agent_name"),
    ("return-howto", "nl", "return", "Zo stuur je een artikel terug",
     "Hallo $first_name,\n\nje kunt een retour starten in je account: $portal_url\n\n"
     "Met vriendelijke groet,\n$agent_name"),
    ("vip-checkin", "en", "vip", "Personal check-in for a VIP",
     "Hello $first_name,\n\nthank you for being one of our best customers. Is there anything "
     "we can do better for you?\n\nKind regards,\n$agent_name"),
    ("vip-checkin", "da", "vip", "Personlig henvendelse til en VIP",
     "Hej $first_name,\n\ntak fordi du er en af vores bedste kunder. Er der noget, vi kan "
     "gøre bedre for dig?\n\nVenlig hilsen\n$agent_name"),
    ("vip-checkin", "de", "vip", "Persönliche Nachfrage bei einem VIP",
     "Hallo $first_name,\n\ndanke, dass Sie zu unseren besten Kunden gehören. Können wir "
     "etwas besser für Sie machen?\n\nViele Grüße\n$agent_name"),
    ("vip-checkin", "nl", "vip", "Persoonlijk contact met een VIP",
     "Hallo $first_name,\n\nbedankt dat je een van onze beste klanten bent. Kunnen we iets "
     "beter voor je doen?\n\nMet vriendelijke groet,\n$agent_name"),
    ("general-thanks", "en", "general", "Thank you for getting in touch",
     "Hello $first_name,\n\nthank you for your message (case $case_number). \n\n"
     "Kind regards,\n$agent_name"),
    ("general-thanks", "da", "general", "Tak for din henvendelse",
     "Hej $first_name,\n\ntak for din besked (sag $case_number). \n\n"
     "Venlig hilsen\n$agent_name"),
    ("general-thanks", "de", "general", "Danke für Ihre Nachricht",
     "Hallo $first_name,\n\nvielen Dank für Ihre Nachricht (Fall $case_number). \n\n"
     "Viele Grüße\n$agent_name"),
    ("general-thanks", "nl", "general", "Bedankt voor je bericht",
     "Hallo $first_name,\n\nbedankt voor je bericht (zaak $case_number). \n\n"
     "Met vriendelijke groet,\n$agent_name"),
    ("feedback-sorry", "en", "feedback", "Follow up on low feedback",
     "Hello $first_name,\n\nthank you for your honest feedback. I would like to understand "
     "what went wrong and put it right.\n\nKind regards,\n$agent_name"),
    ("feedback-sorry", "da", "feedback", "Opfølgning på lav tilfredshed",
     "Hej $first_name,\n\ntak for din ærlige feedback. Jeg vil gerne forstå, hvad der gik "
     "galt, og rette op på det.\n\nVenlig hilsen\n$agent_name"),
    ("feedback-sorry", "de", "feedback", "Nachfassen bei schlechter Bewertung",
     "Hallo $first_name,\n\ndanke für Ihr ehrliches Feedback. Ich möchte verstehen, was "
     "schiefgelaufen ist, und es in Ordnung bringen.\n\nViele Grüße\n$agent_name"),
    ("feedback-sorry", "nl", "feedback", "Opvolging van lage feedback",
     "Hallo $first_name,\n\nbedankt voor je eerlijke feedback. Ik wil graag begrijpen wat er "
     "misging en het goedmaken.\n\nMet vriendelijke groet,\n$agent_name"),
]


def macro_variables(case: dict[str, Any], panels: dict[str, dict[str, Any]],
                    agent_name: str, portal_url: str) -> dict[str, str]:
    """The values of a case's macro variables, from the workspace panels the agent may see
    (a panel that is not permitted or not available fills nothing)."""
    values = {"case_number": f"K-{case['token']}", "agent_name": agent_name,
              "portal_url": portal_url}
    profile = panels.get("profile") or {}
    if profile.get("status") == "ok":
        values["first_name"] = str((profile.get("data") or {}).get("first_name") or "")
    shipments: list[dict[str, Any]] = []
    ships = panels.get("shipments") or {}
    if ships.get("status") == "ok":
        shipments = list((ships.get("data") or {}).get("shipments") or [])
    shipment = next((s for s in shipments if case.get("shipment_id")
                     and s.get("id") == case["shipment_id"]), None)
    order_id = case.get("order_id") or (shipment or {}).get("order_id")
    if shipment is None and order_id:
        shipment = next((s for s in shipments if s.get("order_id") == order_id), None)
    if shipment and shipment.get("tracking_url"):
        values["tracking_url"] = str(shipment["tracking_url"])
    orders = panels.get("orders") or {}
    if order_id and orders.get("status") == "ok":
        order = next((o for o in (orders.get("data") or {}).get("orders") or []
                      if o.get("order_id") == order_id), None)
        if order and order.get("number"):
            values["order_number"] = str(order["number"])
    return {k: v for k, v in values.items() if v}


class MacroService:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self._seeded = False

    async def save(self, key: str, locale: str, category: str, title: str, body: str) -> str:
        problem = models.macro_problem(key, locale, category, title, body)
        if problem:
            raise InvalidCase(problem, code="service.invalid_macro")
        macro_id = derived_id("service.macro", key, locale)
        async with self.kernel.db.transaction() as uow:
            await uow.execute(upsert(uow.dialect, service_macros, ["key", "locale"],
                                     ["title", "category", "body", "updated_at"]),
                              {"id": macro_id, "key": key, "locale": locale,
                               "category": category, "title": title, "body": body,
                               "updated_at": self.kernel.clock.now()})
        return macro_id

    async def ensure_defaults(self) -> None:
        """Add the built-in macros an installation lacks (by key and locale); edited ones
        are kept as they are."""
        now = self.kernel.clock.now()
        async with self.kernel.db.transaction() as uow:
            await uow.execute(insert_ignore(uow.dialect, service_macros), [
                {"id": derived_id("service.macro", key, locale), "key": key, "locale": locale,
                 "category": category, "title": title, "body": body, "updated_at": now}
                for key, locale, category, title, body in DEFAULT_MACROS])

    async def list_all(self) -> list[dict[str, Any]]:
        """Every macro; the built-in ones an installation lacks are added on first use."""
        if not self._seeded:
            self._seeded = True
            await self.ensure_defaults()
        async with self.kernel.db.read() as conn:
            rows = (await conn.execute(sa.select(service_macros).order_by(
                service_macros.c.category, service_macros.c.key,
                service_macros.c.locale))).all()
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

    def for_case(self, macros: list[dict[str, Any]], variables: dict[str, str]
                 ) -> list[dict[str, Any]]:
        """Suggested macros with their text filled for the case; ``unfilled`` names the
        variables the agent still has to fill in by hand."""
        out = []
        for m in macros:
            used = models.macro_variables_used(m["body"])
            out.append({**m, "text": self.render(m["body"], variables),
                        "unfilled": sorted(used - set(variables))})
        return out

    async def suggest_for_case(self, case: dict[str, Any], panels: dict[str, dict[str, Any]],
                               agent_name: str) -> list[dict[str, Any]]:
        """The case's suggested macros (its category first, in the locale closest to the
        case's or else the customer's), filled with the case's variables."""
        profile = panels.get("profile") or {}
        locale = case.get("locale") or (
            (profile.get("data") or {}).get("locale") if profile.get("status") == "ok"
            else None)
        variables = macro_variables(case, panels, agent_name,
                                    f"{self.kernel.settings.effective_public_url}/portal/service")
        return self.for_case(await self.suggest(case["category"], locale), variables)
