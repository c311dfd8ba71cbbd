"""The quick reading of simple mails gives what the full parse gives, and steps aside
for anything it does not handle."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest

from kunde.service import inbound


def _full(raw: bytes) -> object:
    try:
        return inbound.parse_mail(raw)
    except inbound.MalformedMail as exc:
        return ("malformed", str(exc))


def _mails() -> list[bytes]:
    out = []
    for sender in ("a@b.example", "Jane Doe <jane@x.example>", '"Doe, Jane" <j@x.example>',
                   "Jøns <j@x.example>", "bad", "x <y>"):
        for subject in ("Hi", "Re: [K-ABCDEF12] Order", "Ünïcode", "long " * 30):
            for subtype in ("plain", "html"):
                m = EmailMessage()
                m["From"], m["Subject"], m["Message-ID"] = sender, subject, "<a.b@c>"
                m["In-Reply-To"], m["References"] = "<x@y>", "<p@q> <x@y>"
                m.set_content("Hello <b>there</b>\n> quoted\nOn Mon someone wrote:\nold"
                              if subtype == "html" else "Hi ø\n> q\n", subtype=subtype)
                out.append(bytes(m))
    latin = base64.b64encode("h\xe9j".encode("latin-1"))
    return [*out,
        b"From: a@b.c\r\nSubject: x\r\n\r\nbody\r\n",
        b"From: a@b.c\nContent-Type: text/plain; charset=latin-1\n"
        b"Content-Transfer-Encoding: base64\n\n" + latin + b"\n",
        b"From: a@b.c\nContent-Type: text/plain; charset=bogus\n\nx\n",
        b"From: a@b.c\nContent-Type: application/pdf\n\nx\n",
        b"From: a@b.c\nContent-Disposition: attachment\n\nx\n",
        b"Subject: none\n\nx", b"From: a@b.c\n\n", b"garbage"]


@pytest.mark.parametrize("raw", _mails())
def test_quick_parse_matches_the_full_parse(raw: bytes, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    quick = _full(raw)
    monkeypatch.setattr(inbound, "_parse_simple", lambda _raw: None)
    assert quick == _full(raw)


def test_a_plain_reply_takes_the_quick_reading() -> None:
    m = EmailMessage()
    m["From"], m["Subject"] = "Jane <jane@x.example>", "Re: [K-ABCDEF12] Order"
    m["Message-ID"], m["In-Reply-To"] = "<n@mail.example>", "<r@shop.example>"
    m.set_content("Where is it?\n\n> Hello!\n")
    parsed = inbound._parse_simple(bytes(m))
    assert parsed is not None
    assert (parsed.sender, parsed.body, parsed.references) == (
        "jane@x.example", "Where is it?", ["<r@shop.example>"])
