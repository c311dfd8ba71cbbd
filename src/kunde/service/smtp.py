"""Kunde's own inbound SMTP server (aiosmtpd), run inside the process's event loop.

Started by the server when ``KUNDE_INBOUND_SMTP_PORT`` is set, or on its own with
``kunde service smtp``. Every accepted message is handed to `InboundMailService`, which
commits it before the server answers ``250``: a mail acknowledged is a mail stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from kunde.kernel import Kernel
from kunde.service.inbound import MAX_ACCEPTED_BYTES, InboundMailService

log = logging.getLogger("kunde.service.smtp")


class InboundHandler:
    def __init__(self, kernel: Kernel) -> None:
        self.inbound = kernel.service(InboundMailService)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            result = await self.inbound.receive(
                raw, str(envelope.mail_from or ""), [str(r) for r in envelope.rcpt_tos])
        except Exception:
            log.exception("inbound mail could not be stored")
            return "451 4.3.0 Could not store the message now; try again later"
        log.info("inbound mail: %s", result.get("outcome"))
        return "250 2.0.0 Message accepted"


class InboundSmtp:
    """The listening server of one process (a kernel service: one per kernel)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the port."""
        loop = asyncio.get_running_loop()
        handler = InboundHandler(self.kernel)

        def protocol() -> Any:
            return SMTP(handler, data_size_limit=MAX_ACCEPTED_BYTES, enable_SMTPUTF8=True,
                        hostname="kunde", ident="Kunde inbound", loop=loop)

        self.server = await loop.create_server(protocol, host, port)
        bound = int(self.server.sockets[0].getsockname()[1])
        log.info("inbound SMTP listening on %s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None


async def start_with_server(kernel: Kernel) -> None:
    """Feature start-up: listen when the settings name an inbound SMTP port."""
    port = kernel.settings.inbound_smtp_port
    if port:
        await kernel.service(InboundSmtp).start(kernel.settings.host, port)


async def stop_with_server(kernel: Kernel) -> None:
    await kernel.service(InboundSmtp).stop()
