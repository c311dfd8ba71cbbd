"""``kunde service …`` commands: the inbound SMTP server and a one-off SLA sweep."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer

from kunde.clikit import _settings, out, run


def register(app: Any) -> None:
    service_app = typer.Typer(help="Customer service: inbound mail, SLA sweep.",
                              no_args_is_help=True)
    app.add_typer(service_app, name="service")

    @service_app.command("smtp")
    def smtp(
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 2525,
        host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    ) -> None:
        """Run Kunde's inbound SMTP server: mail to it lands threaded on its case."""
        from kunde.service.smtp import InboundSmtp

        settings = _settings()

        async def work(kernel: Any) -> None:
            server = kernel.service(InboundSmtp)
            bound = await server.start(host, port)
            out.print(f"inbound SMTP listening on {host}:{bound}; Ctrl-C stops it")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            await server.stop()

        run(settings, work)

    @service_app.command("sla")
    def sla() -> None:
        """Escalate open cases whose SLA is about to break (the job runs this every minute)."""
        from kunde.service.handlers import escalate_at_risk

        n = run(_settings(), escalate_at_risk)
        out.print(f"escalated {n} cases")
