"""Cases of unverified contacts follow their address into erasure and access requests.

Mail from an address no customer had opens a case that belongs to nobody yet. When the
person behind that address is erased, those cases lose their sender address, subject and
conversation as well (and mail kept for review from the address goes): in the erasure
transaction for addresses the customer wrote to service from, and right after it for any
address of theirs now on the suppression list.
"""

from __future__ import annotations

from email.message import EmailMessage

import sqlalchemy as sa

from kunde.kernel import Kernel
from kunde.privacy.erasure import ErasureService
from kunde.profiles.service import ProfileService
from kunde.service import privacy
from kunde.service.inbound import MAX_THREADED_BYTES, InboundMailService
from kunde.service.service import CaseService
from kunde.service.tables import service_inbound_review
from test_service_cases import drain


def mail(sender: str, subject: str, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "service@shop.example"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg.as_bytes()


async def receive(kernel: Kernel, sender: str, subject: str, body: str) -> str:
    result = await kernel.service(InboundMailService).receive(mail(sender, subject, body),
                                                             sender)
    return str(result.get("case_id") or result.get("review_id"))


async def erase(kernel: Kernel, customer_id: str) -> dict[str, object]:
    erasures = ErasureService(kernel)
    request_id = await erasures.request(customer_id, requested_by="staff:dpo", channel="test")
    receipt = await erasures.run(request_id)
    await drain(kernel)
    return receipt


async def review_ids(kernel: Kernel) -> set[str]:
    async with kernel.db.read() as conn:
        return {r.id for r in await conn.execute(sa.select(service_inbound_review.c.id))}


async def assert_erased(kernel: Kernel, case_id: str) -> None:
    cases = kernel.service(CaseService)
    case = await cases.get_case(case_id)
    assert case["subject"] is None and case["contact_email"] is None
    assert case["tags"] == [privacy.ERASED_CONTACT_TAG] and not case["contact_verified"]
    assert await cases.thread(case_id) == []
    assert [a["action"] for a in await cases.activity(case_id)][-1] == "contact_erased"
    async with kernel.db.read() as conn:
        from kunde.store.database import UnitOfWork

        keys = await kernel.vault.keys_for(UnitOfWork(conn, kernel.db.dialect), [case_id],
                                           create=False)
    assert keys == {}  # the case's own key is shredded: nothing sealed under it opens


async def test_contact_cases_of_an_erased_customer_are_erased(kernel: Kernel) -> None:
    profiles = kernel.service(ProfileService)
    cases = kernel.service(CaseService)
    # Before Mia has an account she writes twice from her private address, once too big.
    early = await receive(kernel, "Mia <mia.private@example.net>", "Lost parcel",
                          "My address is Elm Street 4")
    big = mail("mia.private@example.net", "Photos", "x" * (MAX_THREADED_BYTES + 10))
    review = (await kernel.service(InboundMailService).receive(big, ""))["review_id"]
    # ...and from her work address, which profiles learns later but she never uses here.
    work = await receive(kernel, "mia@work.example", "Invoice", "Please send the invoice")
    stranger = await receive(kernel, "ole@example.org", "Hello", "Do you ship to Norway?")
    stranger_review = (await kernel.service(InboundMailService).receive(
        mail("ole@example.org", "Big", "y" * (MAX_THREADED_BYTES + 10)), ""))["review_id"]

    mia = await profiles.ensure_customer({"email": "mia.private@example.net"}, "web")
    await profiles.ensure_customer({"email": "mia@work.example", "user_id": "mia-1"}, "web")
    await profiles.ensure_customer({"email": "mia.private@example.net", "user_id": "mia-1"},
                                   "web")
    # Now a customer, her next mail opens a case of her own.
    own = await receive(kernel, "mia.private@example.net", "Again", "Still no parcel")
    assert (await cases.get_case(own))["customer_id"] == mia
    assert {c["id"] for c in await cases.list_cases()} == {early, work, stranger, own}

    # Her access request includes the cases she opened before she was known.
    exported = await privacy.export(kernel, [mia])
    bodies = {m["body"] for c in exported["cases"] for m in c["messages"]}
    assert bodies == {"Still no parcel", "My address is Elm Street 4",
                      "Please send the invoice"}

    receipt = await erase(kernel, mia)
    counts = receipt["features"]["service"]  # type: ignore[index]
    assert counts["service_contact_cases_erased"] == 1  # the private address, in the erasure
    assert counts["service_inbound_review_deleted"] == 1
    for case_id in (early, work):  # the work address: after it, from the suppression list
        await assert_erased(kernel, case_id)
    assert await review_ids(kernel) == {stranger_review}
    assert review not in await review_ids(kernel)

    # Someone else's case is untouched.
    other = await cases.get_case(stranger)
    assert other["contact_email"] == "ole@example.org"
    assert [m["body"] for m in await cases.thread(stranger)] == ["Do you ship to Norway?"]
    # Writing in again after the erasure is a new conversation, kept.
    again = await receive(kernel, "mia@work.example", "Hi", "New question")
    await drain(kernel)
    assert (await cases.get_case(again))["contact_email"] == "mia@work.example"
