"""Errors of the personalisation feature, with stable codes."""

from __future__ import annotations

from kunde.core.errors import InvalidInput, KundeError, NotFound


class TrainingFailed(KundeError):
    status = 422
    code = "personalisation.training_failed"


class DatasetUnavailable(KundeError):
    status = 422
    code = "personalisation.dataset_unavailable"


class BadContext(InvalidInput):
    code = "personalisation.bad_context"


class ExperimentNotFound(NotFound):
    code = "personalisation.experiment_not_found"


class FlagNotFound(NotFound):
    code = "personalisation.flag_not_found"
