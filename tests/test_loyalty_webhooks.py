"""Signed outbound webhooks for loyalty events: delivered once, verifiable, retried."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from kunde.core.ids import new_id
from kunde.kernel import Kernel
from kunde.loyalty.webhooks import LoyaltyWebhooks
from kunde.messaging import signing
from kunde.privacy.ssrf import OutboundPolicy, UnsafeDestination
from test_loyalty_engine import drain, emit, setup_programme


@pytest.fixture
def sink() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", got
    finally:
        server.shutdown()
        server.server_close()


async def test_loyalty_events_are_delivered_signed_and_once(
        kernel: Kernel, sink: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    url, got = sink
    hooks = kernel.service(LoyaltyWebhooks)
    with pytest.raises(UnsafeDestination):  # loopback is refused unless allowed
        await hooks.subscribe(url, ["loyalty.points_awarded"])
    hooks.policy = OutboundPolicy(allow_networks=("127.0.0.0/8",))
    sub = await hooks.subscribe(url, ["loyalty.points_awarded", "loyalty.quest_completed"])
    await setup_programme(kernel)
    cid = new_id()
    await emit(kernel, cid, "interaction.recorded", {"kind": "product_reviewed", "sku": "S"})
    await drain(kernel)
    await drain(kernel)  # a second pass delivers nothing new
    assert (await hooks.send_due()) == "sent 2, failed 0"
    assert (await hooks.send_due()) == "sent 0, failed 0"
    types = []
    for headers, body in got:
        signing.verify([sub["secret"]], headers, body, time.time())
        doc = json.loads(body)
        assert doc["data"]["customer_id"] == cid
        types.append(doc["type"])
    assert sorted(types) == ["loyalty.points_awarded", "loyalty.quest_completed"]
