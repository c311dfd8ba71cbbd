"""The service report refuses a reporting period it cannot compute, with a problem+json
4xx instead of a server error (schemathesis found `days` far beyond a date's range)."""

from __future__ import annotations

import pytest

from conftest import AppClient
from kunde.kernel import Kernel


@pytest.mark.parametrize("days", ["1000000000", "800000", "-1000000000", "9223372036854775807", "0",
                                  "-5", "3651"])
async def test_report_refuses_periods_out_of_range(kernel: Kernel, client: AppClient,
                                                   admin_headers: dict[str, str],
                                                   days: str) -> None:
    for path in ("/v1/service/reports", "/console/service/reports"):
        r = await client.get(path, params={"days": days}, headers=admin_headers)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "service.invalid_period"


async def test_report_for_a_valid_period(kernel: Kernel, client: AppClient,
                                         admin_headers: dict[str, str]) -> None:
    for days in ("1", "90", "3650"):
        r = await client.get("/v1/service/reports", params={"days": days},
                             headers=admin_headers)
        assert r.status_code == 200, r.text
    assert (await client.get("/v1/service/reports", params={"days": "x"},
                             headers=admin_headers)).status_code == 400
