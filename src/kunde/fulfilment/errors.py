"""Stable error codes of fulfilment (``fulfilment.*``)."""

from __future__ import annotations

from kunde.core.errors import Conflict, InvalidInput, KundeError, NotFound, Unauthenticated


class ShipmentNotFound(NotFound):
    code = "fulfilment.shipment_not_found"


class ReturnNotFound(NotFound):
    code = "fulfilment.return_not_found"


class BadWebhook(Unauthenticated):
    """Signature, timestamp or headers refused; ``reason`` says which."""

    code = "fulfilment.webhook_rejected"


class WebhookReplayed(Conflict):
    code = "fulfilment.webhook_replayed"


class BadTrackingPayload(InvalidInput):
    code = "fulfilment.bad_tracking_payload"


class UnknownCarrier(NotFound):
    code = "fulfilment.unknown_carrier"


class ReturnRefused(KundeError):
    status = 422
    code = "fulfilment.return_refused"


class ReturnStateConflict(Conflict):
    code = "fulfilment.return_state"


class TrackingNumberTaken(Conflict):
    code = "fulfilment.tracking_number_taken"
