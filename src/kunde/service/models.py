"""Domain rules of customer service, pure: case states, SLA targets, queues, case tokens,
macros, feedback scoring and the fatigue policy. No I/O; unit-tested without a database."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from string import Template
from typing import Literal

Status = Literal["new", "open", "pending", "solved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]
Channel = Literal["staff", "portal", "email", "chat", "system"]
Direction = Literal["in", "out", "note"]
FeedbackKind = Literal["csat", "nps", "review"]

STATUSES: tuple[Status, ...] = ("new", "open", "pending", "solved", "closed")
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
CHANNELS: tuple[Channel, ...] = ("staff", "portal", "email", "chat", "system")
OPEN_STATUSES: tuple[Status, ...] = ("new", "open", "pending")

# Which status may follow which; "closed" is final (a new message opens a new case).
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending", "solved"}),
    "open": frozenset({"pending", "solved"}),
    "pending": frozenset({"open", "solved"}),
    "solved": frozenset({"open", "closed"}),
    "closed": frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target == current or target in TRANSITIONS.get(current, frozenset())


def status_after_message(current: str, direction: str) -> str:
    """A customer writing (re)opens the case; an agent's reply waits for the customer."""
    if direction == "in":
        return "open" if current in ("new", "pending", "solved") else current
    if direction == "out":
        return "pending" if current in ("new", "open") else current
    return current


@dataclass(frozen=True)
class SlaTarget:
    first_response: timedelta
    resolution: timedelta


SLA_TARGETS: dict[str, SlaTarget] = {
    "urgent": SlaTarget(timedelta(hours=1), timedelta(hours=4)),
    "high": SlaTarget(timedelta(hours=4), timedelta(hours=24)),
    "normal": SlaTarget(timedelta(hours=8), timedelta(hours=48)),
    "low": SlaTarget(timedelta(hours=24), timedelta(hours=120)),
}
# A timer is "at risk" once less than this share of its target is left.
SLA_WARN_SHARE = 0.2


def sla_due(priority: str, opened_at: datetime) -> tuple[datetime, datetime]:
    """(first-response due, resolution due) for a case opened at ``opened_at``."""
    target = SLA_TARGETS.get(priority, SLA_TARGETS["normal"])
    return opened_at + target.first_response, opened_at + target.resolution


def sla_at_risk(priority: str, due: datetime, now: datetime, *, resolution: bool) -> bool:
    target = SLA_TARGETS.get(priority, SLA_TARGETS["normal"])
    span = target.resolution if resolution else target.first_response
    return due - now <= span * SLA_WARN_SHARE


def raised(priority: str) -> str:
    """One step up, so an escalated case moves ahead in its queue."""
    i = PRIORITIES.index(priority) if priority in PRIORITIES else 1
    return PRIORITIES[min(i + 1, len(PRIORITIES) - 1)]


# Team queues and which category lands where.
QUEUES = ("general", "delivery", "returns", "billing", "vip")
CATEGORY_QUEUE = {
    "delivery": "delivery",
    "return": "returns",
    "refund": "billing",
    "payment": "billing",
    "vip": "vip",
    "feedback": "general",
    "general": "general",
}


def queue_for(category: str) -> str:
    return CATEGORY_QUEUE.get(category, "general")


# -- case tokens: the key that threads an email reply to its case ----------------------------
# No 0/O or 1/I: a token is read aloud on the phone.
TOKEN_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # noqa: S105 - not a secret
TOKEN_RE = re.compile(r"\[K-([A-Z2-9]{8})\]")
ADDRESS_RE = re.compile(r"case\+([A-Za-z2-9]{8})@", re.IGNORECASE)


def new_case_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(8))


def subject_tag(token: str) -> str:
    return f"[K-{token}]"


def token_in(subject: str, recipients: list[str]) -> str | None:
    """The case token in a subject line (``[K-7F3A9C21]``) or a ``case+TOKEN@`` address."""
    m = TOKEN_RE.search(subject or "")
    if m:
        return m.group(1)
    for rcpt in recipients:
        m2 = ADDRESS_RE.search(rcpt)
        if m2:
            return m2.group(1).upper()
    return None


# -- email threading headers -----------------------------------------------------------------
# Message-ID of a mail that came without one (stored so a redelivery is still recognised);
# such ids never go into the References of a reply.
SYNTHETIC_ID_SUFFIX = "@inbound.kunde>"
MAX_REFERENCES = 20


def reply_message_id(message_id: str, token: str, domain: str) -> str:
    """The stable Message-ID of an agent's reply: its thread message id and the case token."""
    return f"<{message_id}.{token}@{domain}>"


def reply_local_part(token: str) -> str:
    """Local part of the Reply-To of a case's mail: ``case+TOKEN`` threads any answer."""
    return f"case+{token}"


def mail_domain(mail_from: str, inbound_domain: str = "") -> str:
    """The domain whose mail reaches Kunde: the configured one, else that of mail_from."""
    if inbound_domain.strip():
        return inbound_domain.strip().lower()
    address = mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return address.rpartition("@")[2].lower() or "localhost"


def strip_subject(subject: str) -> str:
    """The subject without reply prefixes and our tag, for a new case's title."""
    s = TOKEN_RE.sub("", subject or "").strip()
    while True:
        t = re.sub(r"^(re|aw|fwd?|wg|sv)\s*:\s*", "", s, flags=re.IGNORECASE)
        if t == s:
            return s.strip() or "(no subject)"
        s = t


# -- macros ----------------------------------------------------------------------------------
MACRO_VARIABLES = frozenset({"first_name", "case_number", "order_number", "agent_name",
                             "tracking_url", "portal_url"})


MACRO_KEY_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
MACRO_LOCALE_RE = re.compile(r"[a-z]{2}(-[A-Z]{2})?")
_VARIABLE_RE = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)\})")


def macro_variables_used(body: str) -> set[str]:
    """The ``$name`` / ``${name}`` variables a macro body refers to (``$$`` is a dollar)."""
    return {a or b for a, b in _VARIABLE_RE.findall(body.replace("$$", ""))}


def macro_problem(key: str, locale: str, category: str, title: str, body: str) -> str | None:
    """Why a macro cannot be saved, or None."""
    if not MACRO_KEY_RE.fullmatch(key or ""):
        return "the key is 1-64 lower-case letters, digits and dashes"
    if not MACRO_LOCALE_RE.fullmatch(locale or ""):
        return "the locale is a language code like 'en' or 'da-DK'"
    if category not in CATEGORY_QUEUE:
        return f"the category is one of {', '.join(sorted(CATEGORY_QUEUE))}"
    if not title.strip() or len(title) > 200:
        return "a macro needs a title of at most 200 characters"
    if not body.strip() or len(body) > 20_000:
        return "a macro needs a body of at most 20,000 characters"
    unknown = macro_variables_used(body) - MACRO_VARIABLES
    if unknown:
        return (f"unknown variable(s) {', '.join('$' + v for v in sorted(unknown))}; "
                f"use {', '.join('$' + v for v in sorted(MACRO_VARIABLES))}")
    return None


def render_macro(body: str, variables: dict[str, str]) -> str:
    """Fill ``$first_name``-style variables; unknown or missing ones stay visible for the agent."""
    return Template(body).safe_substitute({k: v for k, v in variables.items() if v})


def pick_macro_locale(available: list[str], wanted: str | None, default: str = "en") -> str | None:
    """The best locale of a macro: exact, then language only, then the default."""
    if not available:
        return None
    if wanted:
        if wanted in available:
            return wanted
        lang = wanted.split("-")[0].split("_")[0]
        for loc in available:
            if loc.split("-")[0] == lang:
                return loc
    if default in available:
        return default
    return sorted(available)[0]


# -- feedback --------------------------------------------------------------------------------
SCALES: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "review": (1, 5)}


def valid_score(kind: str, score: int) -> bool:
    lo, hi = SCALES[kind]
    return lo <= score <= hi


def nps_class(score: int) -> Literal["promoter", "passive", "detractor"]:
    if score >= 9:
        return "promoter"
    if score >= 7:
        return "passive"
    return "detractor"


def is_detractor(kind: str, score: int) -> bool:
    """Who gets a follow-up case: NPS 0 to 6, CSAT 1 or 2 (a bad review is for the product team)."""
    if kind == "nps":
        return score <= 6
    if kind == "csat":
        return score <= 2
    return False


def nps(scores: list[int]) -> float | None:
    """Net promoter score from -100 to 100, None without answers."""
    if not scores:
        return None
    pro = sum(1 for s in scores if s >= 9)
    det = sum(1 for s in scores if s <= 6)
    return round(100.0 * (pro - det) / len(scores), 1)


def csat(scores: list[int]) -> float | None:
    """Share of satisfied answers (4 or 5 of 5), in percent."""
    if not scores:
        return None
    return round(100.0 * sum(1 for s in scores if s >= 4) / len(scores), 1)


@dataclass(frozen=True)
class FeedbackPolicy:
    """When to ask: NPS after delivery or every ``nps_every_orders`` orders; never more than
    one survey per customer per ``fatigue_days`` (CSAT excepted: it answers their own case),
    and no NPS more often than every ``nps_min_days``."""

    nps_every_orders: int = 5
    fatigue_days: int = 14
    nps_min_days: int = 90
    link_valid_days: int = 30
    follow_up_detractors: bool = True


POLICY = FeedbackPolicy()


def fatigue_allows(kind: str, now: datetime, last_any: datetime | None,
                   last_nps: datetime | None, policy: FeedbackPolicy = POLICY) -> bool:
    if kind == "csat":
        return True
    if last_any is not None and now - last_any < timedelta(days=policy.fatigue_days):
        return False
    return not (kind == "nps" and last_nps is not None
                and now - last_nps < timedelta(days=policy.nps_min_days))

