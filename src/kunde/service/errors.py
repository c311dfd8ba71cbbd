"""Errors of the service feature, with stable codes."""

from __future__ import annotations

from kunde.core.errors import Conflict, Forbidden, InvalidInput, KundeError, NotFound


class CaseNotFound(NotFound):
    code = "service.case_not_found"


class InvalidTransition(Conflict):
    code = "service.invalid_transition"


class InvalidCase(InvalidInput):
    code = "service.invalid_case"


class InvalidPeriod(InvalidInput):
    code = "service.invalid_period"


class FeedbackLinkInvalid(KundeError):
    status = 404
    code = "service.feedback_link_invalid"


class FeedbackAlreadyGiven(Conflict):
    code = "service.feedback_already_given"


class NotYourCase(Forbidden):
    code = "service.not_your_case"


class PeerUnavailable(KundeError):
    """The feature that owns an action is not installed or not ready here."""

    status = 503
    code = "service.peer_unavailable"
