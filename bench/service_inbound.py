"""Inbound email to threaded case: messages per second through Kunde's own SMTP server.

50 customers each opened a case by email; a real SMTP client (smtplib, in a thread) sends
replies carrying the case token in the subject and In-Reply-To of an earlier message, over
4 connections in parallel. A message counts when the server answered 250, i.e. after it
was committed on its case. Target: >= 200 messages/s.
Run: ``.venv/bin/python bench/service_inbound.py`` (SQLite in a temp dir; set
KUNDE_BENCH_DATABASE_URL=postgresql://… to run on PostgreSQL; BENCH_MESSAGES,
BENCH_CUSTOMERS and BENCH_CONNECTIONS change the size).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import smtplib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "50"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "2000"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "4"))


def _send(port: int, mails: list[bytes], rcpt: str) -> int:
    sent = 0
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for raw in mails:
            smtp.sendmail("bench@example.com", [rcpt], raw)
            sent += 1
    return sent


async def run() -> dict[str, Any]:
    logging.getLogger("kunde.service.smtp").setLevel(logging.WARNING)
    import sqlalchemy as sa

    from kunde.kernel import close_kernel, open_kernel
    from kunde.profiles.service import ProfileService
    from kunde.service.inbound import InboundMailService
    from kunde.service.service import Actor, CaseService
    from kunde.service.smtp import InboundSmtp
    from kunde.service.tables import service_cases, service_messages
    from kunde.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="kunde-bench-"))
    url = os.environ.get("KUNDE_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{tmp / 'k.db'}")
    settings = load_settings(environ={}, env="test", data_dir=str(tmp), database_url=url,
                             run_consumers=False, log_json=False, log_level="WARNING")
    kernel = await open_kernel(settings)
    run_id = time.time_ns()
    started = datetime.now(UTC)
    try:
        cases = kernel.service(CaseService)
        inbound = kernel.service(InboundMailService)
        targets = []
        case_ids: list[str] = []
        for i in range(CUSTOMERS):
            email = f"c{i}-{run_id}@example.com"
            await kernel.service(ProfileService).ensure_customer({"email": email}, "web")
            first = EmailMessage()
            first["From"], first["Subject"] = email, f"Order {i}"
            first["Message-ID"] = f"<open-{run_id}-{i}@mail.example>"
            first.set_content("Hi, where is my order?")
            case_id = (await inbound.receive(bytes(first)))["case_id"]
            await cases.reply(case_id, Actor("staff", "a", "Agent"), "Hello!")
            case = await cases.get_case(case_id)
            async with kernel.db.read() as conn:
                reply_id = (await conn.execute(sa.select(service_messages.c.email_message_id)
                            .where(service_messages.c.case_id == case_id,
                                   service_messages.c.direction == "out"))).scalar_one()
            targets.append((email, case["subject_tag"], reply_id))
            case_ids.append(case_id)
        mails = []
        for n in range(MESSAGES):
            email, tag, reply_id = targets[n % CUSTOMERS]
            msg = EmailMessage()
            msg["From"] = email
            msg["To"] = "service@shop.example"
            msg["Subject"] = f"Re: {tag} Order"
            msg["Message-ID"] = f"<bench-{run_id}-{n}@mail.example>"
            msg["In-Reply-To"] = reply_id
            msg.set_content(f"Reply number {n}: where is my parcel?\n\n> Hello!\n")
            mails.append(bytes(msg))
        server = kernel.service(InboundSmtp)
        port = await server.start("127.0.0.1", 0)
        chunks = [mails[i::CONNECTIONS] for i in range(CONNECTIONS)]
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            t0, cpu0 = time.perf_counter(), time.process_time()
            sent = sum(await asyncio.gather(*(
                loop.run_in_executor(pool, _send, port, chunk, "service@shop.example")
                for chunk in chunks)))
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        await server.stop()
        async with kernel.db.read() as conn:
            threaded = (await conn.execute(sa.select(sa.func.count()).select_from(
                service_messages).where(service_messages.c.direction == "in",
                                        service_messages.c.case_id.in_(case_ids)))
                        ).scalar_one()
            new_cases = (await conn.execute(sa.select(sa.func.count()).select_from(
                service_cases).where(service_cases.c.opened_at >= started))).scalar_one()
    finally:
        await close_kernel(kernel)
    return {
        "bench": "service_inbound", "backend": url.split(":")[0], "messages": sent,
        "connections": CONNECTIONS, "seconds": round(elapsed, 2),
        "messages_per_s": round(sent / elapsed, 1), "threaded_messages": threaded - CUSTOMERS,
        "cases_opened": new_cases, "target_messages_per_s": 200,
        # CPU of the whole process (server, SQLite thread and the smtplib clients) per mail.
        "cpu_ms_per_message": round(cpu * 1000 / sent, 2), "load_average": os.getloadavg()[0],
    }


def main() -> dict[str, Any]:
    return asyncio.run(run())


if __name__ == "__main__":
    print(json.dumps(main()))
