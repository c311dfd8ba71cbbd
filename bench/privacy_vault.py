"""Vault overhead: encrypt+decrypt of a typical event payload, and appends with and without it.

* ``seal_open_us``: median over 20,000 rounds of AES-256-GCM seal and open of a typical
  ``ingest.track`` payload (~700 bytes of JSON) under a cached data key (target ≤ 20 µs).
* ``append``: 5,000 events appended to a SQLite event log in batches of 100, once about
  subjects (payloads sealed, keys minted and cached) and once without a subject (clear);
  the ratio is the ingestion throughput kept with encryption on (target ≥ 80 %).

    .venv/bin/python bench/privacy_vault.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROUNDS = 20_000
EVENTS = 5_000
BATCH = 100
PAYLOAD = {
    "message_id": "6f1c1d0e-3b5e-4c1b-9a57-6f0e3e0b9c11", "user_id": "u-123456",
    "anonymous_id": "a-9f8e7d6c", "event": "Product Added",
    "properties": {"sku": "SKU-1234", "product_id": "p-778", "category": "shoes/running",
                   "quantity": 1, "price_minor": 12999, "currency": "EUR",
                   "name": "Trail runner 3", "brand": "Kunde"},
    "traits": {}, "context": {"ip": "203.0.113.7", "locale": "de-DE",
                              "page": {"url": "https://shop.example/p/778", "referrer":
                                       "https://search.example/?q=trail+runner"},
                              "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"},
    "timestamp": "2026-11-23T12:00:00+00:00", "channel": "web",
}


def seal_open() -> dict[str, Any]:
    from kunde.core import jsonutil
    from kunde.privacy.vault import Vault

    key = os.urandom(32)
    data = jsonutil.dumps(PAYLOAD)
    aad = b"01a2-event-id"
    samples = []
    for _ in range(ROUNDS // 100):
        t0 = time.perf_counter()
        for _ in range(100):
            Vault.open_(key, Vault.seal(key, data, aad), aad)
        samples.append((time.perf_counter() - t0) / 100 * 1e6)
    return {"payload_bytes": len(data), "seal_open_us": round(statistics.median(samples), 2),
            "seal_open_us_p90": round(sorted(samples)[int(len(samples) * 0.9)], 2)}


async def appends(tmp: Path) -> dict[str, Any]:
    from kunde.core.events import Event
    from kunde.core.ids import new_id
    from kunde.kernel import close_kernel, open_kernel
    from kunde.settings import load_settings

    settings = load_settings(environ={}, env="test", data_dir=str(tmp),
                             database_url=f"sqlite+aiosqlite:///{tmp / 'kunde.db'}",
                             run_consumers=False, log_json=False)
    kernel = await open_kernel(settings)
    try:
        subjects = [new_id() for _ in range(500)]
        rates = {}
        for label, with_subject in (("warm_up", True), ("clear", False), ("encrypted", True),
                                    ("clear_again", False)):
            t0 = time.perf_counter()
            for start in range(0, EVENTS, BATCH):
                async with kernel.db.transaction() as uow:
                    for i in range(start, start + BATCH):
                        uow.emit(Event.new("ingest.track", PAYLOAD, source="web",
                                           subject_id=subjects[i % 500] if with_subject
                                           else None))
            rates[label] = round(EVENTS / (time.perf_counter() - t0))
        rates.pop("warm_up")
        clear = (rates["clear"] + rates["clear_again"]) / 2
        return {"events_per_s": rates, "encrypted_share": round(rates["encrypted"] / clear, 3)}
    finally:
        await close_kernel(kernel)


def main() -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "privacy_vault", "targets": {
        "seal_open_us": 20, "encrypted_share": 0.8}}
    out.update(seal_open())
    out["append"] = asyncio.run(appends(Path(tempfile.mkdtemp(prefix="kunde-bench-vault-"))))
    return out


if __name__ == "__main__":
    print(json.dumps(main()))
