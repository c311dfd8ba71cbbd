"""Messaging rules, pure: purposes, quiet hours, retry back-off, the circuit breaker."""

from __future__ import annotations

import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Channel = Literal["email", "webhook"]
CHANNELS: tuple[Channel, ...] = ("email", "webhook")
LOCALES = ("en", "da", "de", "nl")
TEMPLATES = ("order_confirmation", "shipped", "delay_apology", "return_received",
             "refund_issued", "service_case_reply", "service_csat_request",
             "service_nps_request", "service_review_request")
# Purposes that need the customer's consent (checked with profiles' ConsentService).
CONSENT_PURPOSES = frozenset({"marketing_email", "marketing_sms", "marketing_push"})
# Transactional mail answers something the customer just did: it goes out at any hour.
# Every other purpose (proactive care, marketing) waits for the end of quiet hours.
IMMEDIATE_PURPOSES = frozenset({"transactional"})

Status = Literal["queued", "sending", "sent", "failed"]
_ID_NAMESPACE = uuid.UUID("6d0c7a51-3f7e-4b43-9a3c-2f1f5b8e0d11")


def message_id_for(idempotency_key: str) -> str:
    """The message id a key always maps to, so a retried enqueue finds its message."""
    return str(uuid.uuid5(_ID_NAMESPACE, "message\x1f" + idempotency_key))


# -- threading headers -------------------------------------------------------
# A sender may give an email its conversation headers through context keys:
# ``message_id`` (a stable Message-ID), ``reply_to_local`` (the local part of a
# Reply-To on the inbound mail domain), ``in_reply_to`` and ``references``.
# Anything that is not a well-formed id or local part is ignored, never sent.
_MSG_ID_RE = re.compile(r"<[^<>\s@]{1,200}@[^<>\s@]{1,200}>")
_LOCAL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
MAX_REFERENCES = 20


def _msg_ids(value: object) -> list[str]:
    items = value if isinstance(value, list | tuple) else str(value or "").split()
    return [str(i) for i in items if _MSG_ID_RE.fullmatch(str(i))]


def mail_domain(mail_from: str, inbound_domain: str = "") -> str:
    """The domain replies should go to: the configured inbound one, else mail_from's."""
    if inbound_domain.strip():
        return inbound_domain.strip().lower()
    address = mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return address.rpartition("@")[2].lower() or "localhost"


def thread_headers(context: dict[str, object], domain: str) -> tuple[tuple[str, str], ...]:
    """Message-ID, Reply-To, In-Reply-To and References asked for by the context."""
    out: list[tuple[str, str]] = []
    message_id = _msg_ids([context.get("message_id")])
    if message_id:
        out.append(("Message-ID", message_id[0]))
    local = str(context.get("reply_to_local") or "")
    if local and _LOCAL_RE.fullmatch(local):
        out.append(("Reply-To", f"{local}@{domain}"))
    in_reply_to = _msg_ids([context.get("in_reply_to")])
    if in_reply_to:
        out.append(("In-Reply-To", in_reply_to[0]))
    references = _msg_ids(context.get("references"))[-MAX_REFERENCES:]
    if references:
        out.append(("References", " ".join(references)))
    return tuple(out)


@dataclass(frozen=True)
class MessagingPolicy:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    timezone: str = "Europe/Copenhagen"
    max_attempts: int = 12
    backoff_base: timedelta = timedelta(seconds=5)
    backoff_cap: timedelta = timedelta(hours=1)
    breaker_threshold: int = 5
    breaker_cooldown: timedelta = timedelta(seconds=30)


def needs_consent(purpose: str) -> bool:
    return purpose in CONSENT_PURPOSES


def pick_locale(wanted: str | None) -> str:
    """The best template locale for ``wanted`` ("da-DK" → "da"); English otherwise."""
    if wanted:
        lang = wanted.replace("_", "-").split("-")[0].lower()
        if lang in LOCALES:
            return lang
    return "en"


def in_quiet_hours(now: datetime, policy: MessagingPolicy, tz: str | None = None) -> bool:
    local = now.astimezone(ZoneInfo(tz or policy.timezone)).time()
    start, end = policy.quiet_start, policy.quiet_end
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def send_not_before(now: datetime, purpose: str, policy: MessagingPolicy,
                    tz: str | None = None) -> datetime:
    """When a message of ``purpose`` queued at ``now`` may first go out (aware UTC)."""
    if purpose in IMMEDIATE_PURPOSES or not in_quiet_hours(now, policy, tz):
        return now
    zone = ZoneInfo(tz or policy.timezone)
    local = now.astimezone(zone)
    end = local.replace(hour=policy.quiet_end.hour, minute=policy.quiet_end.minute,
                        second=0, microsecond=0)
    if end <= local:
        end = (local + timedelta(days=1)).replace(
            hour=policy.quiet_end.hour, minute=policy.quiet_end.minute, second=0,
            microsecond=0)
    return end.astimezone(UTC)


def backoff(attempts: int, policy: MessagingPolicy, rng: random.Random | None = None
            ) -> timedelta:
    """Delay before retry number ``attempts`` (1-based): exponential, capped, ±20 % jitter."""
    base = policy.backoff_base.total_seconds() * (2 ** max(attempts - 1, 0))
    capped = min(base, policy.backoff_cap.total_seconds())
    jitter = (rng or random).uniform(0.8, 1.2)
    return timedelta(seconds=capped * jitter)


@dataclass
class Breaker:
    """A circuit breaker for one destination (an SMTP server, a webhook URL).

    Closed: everything goes. After ``threshold`` consecutive failures it opens for
    ``cooldown``; then one trial is let through (half-open): success closes it,
    failure opens it again.
    """

    threshold: int
    cooldown: timedelta
    failures: int = 0
    open_until: datetime | None = None
    trial_running: bool = False

    def allows(self, now: datetime) -> bool:
        if self.open_until is None:
            return True
        if now < self.open_until or self.trial_running:
            return False
        self.trial_running = True
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self.open_until = None
        self.trial_running = False

    def failed(self, now: datetime) -> None:
        self.failures += 1
        self.trial_running = False
        if self.failures >= self.threshold or self.open_until is not None:
            self.open_until = now + self.cooldown

    @property
    def state(self) -> str:
        if self.open_until is None:
            return "closed"
        return "half_open" if self.trial_running else "open"


@dataclass
class Breakers:
    policy: MessagingPolicy
    items: dict[str, Breaker] = field(default_factory=dict)

    def get(self, destination: str) -> Breaker:
        b = self.items.get(destination)
        if b is None:
            b = Breaker(self.policy.breaker_threshold, self.policy.breaker_cooldown)
            self.items[destination] = b
        return b
