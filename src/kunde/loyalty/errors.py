"""Loyalty errors with stable codes (part of the public API)."""

from __future__ import annotations

from kunde.core.errors import Conflict, InvalidInput, KundeError, NotFound


class InsufficientPoints(Conflict):
    code = "loyalty.insufficient_points"


class OutOfStock(Conflict):
    code = "loyalty.out_of_stock"


class NotEligible(KundeError):
    status = 403
    code = "loyalty.not_eligible"


class UnknownReward(NotFound):
    code = "loyalty.unknown_reward"


class InvalidProgramme(InvalidInput):
    code = "loyalty.invalid_programme"


class TeamError(Conflict):
    code = "loyalty.team"
