"""Pure rules of customer service: states, SLA, tokens, macros, feedback scoring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from kunde.service import models
from kunde.service.charts import bar_chart, line_chart
from kunde.service.inbound import MalformedMail, parse_mail

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_status_rules() -> None:
    assert models.can_transition("new", "solved")
    assert models.can_transition("solved", "open")
    assert not models.can_transition("closed", "open")
    assert models.status_after_message("solved", "in") == "open"
    assert models.status_after_message("open", "out") == "pending"
    assert models.status_after_message("pending", "note") == "pending"


@given(st.sampled_from(models.STATUSES), st.lists(st.sampled_from(models.STATUSES)))
def test_closed_is_final(start: str, path: list[str]) -> None:
    state = start
    for target in path:
        if models.can_transition(state, target):
            assert state != "closed" or target == "closed"
            state = target


def test_sla_targets_and_risk() -> None:
    first, resolution = models.sla_due("urgent", T0)
    assert first == T0 + timedelta(hours=1) and resolution == T0 + timedelta(hours=4)
    assert not models.sla_at_risk("urgent", first, T0, resolution=False)
    assert models.sla_at_risk("urgent", first, first - timedelta(minutes=11), resolution=False)
    assert models.raised("normal") == "high" and models.raised("urgent") == "urgent"


def test_case_tokens_in_subject_and_address() -> None:
    token = models.new_case_token()
    assert len(token) == 8 and set(token) <= set(models.TOKEN_ALPHABET)
    assert models.token_in(f"Re: {models.subject_tag(token)} Boots", []) == token
    assert models.token_in("Boots", [f"case+{token.lower()}@in.shop.example"]) == token
    assert models.token_in("Boots", ["service@shop.example"]) is None
    assert models.strip_subject(f"RE: Fwd: {models.subject_tag(token)} Boots") == "Boots"


def test_macros_render_and_locale() -> None:
    text = models.render_macro("Hi $first_name, case $case_number $unknown",
                               {"first_name": "Mia", "case_number": "K1"})
    assert text == "Hi Mia, case K1 $unknown"
    assert models.pick_macro_locale(["en", "de"], "de-AT") == "de"
    assert models.pick_macro_locale(["en", "de"], "fr") == "en"


def test_feedback_scoring_and_fatigue() -> None:
    assert models.nps([10, 9, 8, 3]) == 25.0
    assert models.csat([5, 4, 2, 1]) == 50.0
    assert models.is_detractor("nps", 6) and not models.is_detractor("nps", 7)
    assert models.is_detractor("csat", 2) and not models.is_detractor("review", 1)
    assert models.fatigue_allows("csat", T0, T0, T0)
    assert not models.fatigue_allows("review", T0, T0 - timedelta(days=2), None)
    assert not models.fatigue_allows("nps", T0, T0 - timedelta(days=30), T0 - timedelta(days=30))
    assert models.fatigue_allows("review", T0, T0 - timedelta(days=30), T0 - timedelta(days=30))


def test_parse_mail_strips_quotes_and_rejects_no_sender() -> None:
    raw = (b"From: Mia <mia@example.com>\r\nSubject: Hi\r\nMessage-ID: <a@b>\r\n"
           b"In-Reply-To: <x@y>\r\n\r\nNew text\r\n\r\nOn Mon, Kunde wrote:\r\n> old\r\n")
    mail = parse_mail(raw)
    assert mail.sender == "mia@example.com" and mail.references == ["<x@y>"]
    assert mail.body == "New text"
    try:
        parse_mail(b"Subject: nobody\r\n\r\nhello")
    except MalformedMail:
        pass
    else:
        raise AssertionError("a mail without From must be refused")


def test_charts_are_svg_and_escape_labels() -> None:
    svg = bar_chart("Cases <by> status", [("new", 3), ("<open>", 5)])
    assert svg.startswith("<svg") and "&lt;open&gt;" in svg and "<open>" not in svg
    assert "no data yet" in line_chart("NPS", [("W1", None)], -100, 100)
    assert "polyline" in line_chart("NPS", [("W1", 10.0), ("W2", 20.0)], -100, 100)
