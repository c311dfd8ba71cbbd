"""The audit log is a hash chain: appends verify, and any edit, insert or delete is detected."""

from __future__ import annotations

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.privacy.audit import AuditService
from kunde.privacy.tables import audit_log


async def _record(kernel: Kernel, n: int) -> None:
    audit = kernel.service(AuditService)
    for i in range(n):
        async with kernel.db.transaction() as uow:
            await audit.record(uow, "staff:u1", "profiles.viewed", f"c{i}",
                               {"fields": ["email", "name"], "n": i, "z": {"b": 1, "a": 2}})


async def test_chain_verifies_and_search_filters(kernel: Kernel) -> None:
    await _record(kernel, 5)
    audit = kernel.service(AuditService)
    report = await audit.verify()
    assert report.ok and report.checked == 5
    found = await audit.search(subject="c3")
    assert [e["seq"] for e in found] == [4]
    assert len(await audit.search(action="profiles.")) == 5
    assert await audit.search(actor="staff:nobody") == []


async def test_edit_is_detected(kernel: Kernel) -> None:
    await _record(kernel, 4)
    async with kernel.db.transaction() as uow:
        await uow.execute(audit_log.update().where(audit_log.c.seq == 2)
                          .values(actor="staff:someone-else"))
    report = await kernel.service(AuditService).verify()
    assert not report.ok and report.first_bad_seq == 2 and "altered" in report.problem


async def test_delete_is_detected(kernel: Kernel) -> None:
    await _record(kernel, 4)
    async with kernel.db.transaction() as uow:
        await uow.execute(audit_log.delete().where(audit_log.c.seq == 3))
    report = await kernel.service(AuditService).verify()
    assert not report.ok and report.first_bad_seq == 3


async def test_delete_of_the_head_is_detected(kernel: Kernel) -> None:
    await _record(kernel, 3)
    async with kernel.db.transaction() as uow:
        await uow.execute(audit_log.delete().where(audit_log.c.seq == 1))
    report = await kernel.service(AuditService).verify()
    assert not report.ok


async def test_rolled_back_action_leaves_no_entry(kernel: Kernel) -> None:
    audit = kernel.service(AuditService)
    try:
        async with kernel.db.transaction() as uow:
            await audit.record(uow, "staff:u1", "privacy.erased", "c1", {})
            raise RuntimeError("the action failed")
    except RuntimeError:
        pass
    async with kernel.db.read() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one()
    assert n == 0
