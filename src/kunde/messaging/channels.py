"""Delivery channels: email over SMTP and signed outbound webhooks.

Both are called only by the outbox dispatcher, never on a request path, and both
have short timeouts so a slow destination costs the dispatcher seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol

import httpx

from kunde.core import jsonutil
from kunde.messaging import signing


@dataclass(frozen=True)
class Outgoing:
    message_id: str
    customer_id: str
    recipient: str
    subject: str
    body: str
    template: str
    purpose: str
    locale: str
    # Conversation headers (Message-ID, Reply-To, In-Reply-To, References), when asked for.
    headers: tuple[tuple[str, str], ...] = ()


class EmailChannel(Protocol):
    async def send_batch(self, items: list[Outgoing]) -> list[Exception | None]: ...


class SmtpChannel:
    """One SMTP connection per batch, in a worker thread (smtplib is blocking)."""

    def __init__(self, host: str, port: int, mail_from: str, timeout: float = 5.0) -> None:
        self.host, self.port, self.mail_from, self.timeout = host, port, mail_from, timeout

    def _send_all(self, items: list[Outgoing]) -> list[Exception | None]:
        results: list[Exception | None] = []
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            for item in items:
                msg = EmailMessage()
                msg["From"] = self.mail_from
                msg["To"] = item.recipient
                msg["Subject"] = item.subject
                given = dict(item.headers)
                msg["Message-ID"] = given.pop("Message-ID", None) or make_msgid(
                    idstring=item.message_id)
                for name, value in given.items():
                    msg[name] = value
                msg["X-Kunde-Message-Id"] = item.message_id
                msg["Content-Language"] = item.locale
                msg.set_content(item.body)
                try:
                    smtp.send_message(msg)
                    results.append(None)
                except smtplib.SMTPRecipientsRefused as exc:
                    results.append(exc)
        return results

    async def send_batch(self, items: list[Outgoing]) -> list[Exception | None]:
        """Per-item results; raises when the server cannot be reached at all."""
        return await asyncio.to_thread(self._send_all, items)


class WebhookChannel:
    """POSTs a message as JSON to an endpoint, signed per Standard Webhooks."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout

    async def send(self, url: str, secret: str, item: Outgoing) -> None:
        body = jsonutil.dumps({
            "type": "message.created",
            "timestamp": int(time.time()),
            "data": {
                "message_id": item.message_id, "customer_id": item.customer_id,
                "recipient": item.recipient, "template": item.template,
                "purpose": item.purpose, "locale": item.locale,
                "subject": item.subject, "body": item.body,
            },
        })
        hdrs: dict[str, Any] = signing.headers(secret, item.message_id, int(time.time()), body)
        hdrs["content-type"] = "application/json"
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            response = await client.post(url, content=body, headers=hdrs)
        if response.status_code >= 300:
            raise RuntimeError(f"webhook answered {response.status_code}")
