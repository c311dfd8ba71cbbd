"""Which payment provider adapters this process uses, chosen when the service is built.

``KUNDE_PAYMENT_PROVIDER`` (default ``test``) names the provider new checkouts use;
``KUNDE_STRIPE_API_KEY`` and ``KUNDE_STRIPE_WEBHOOK_SECRET`` enable the Stripe adapter.
Outside dev/test the ``test`` provider is refused as the default, so a forgotten
variable cannot take fake payments in production.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from kunde.commerce.payments import PaymentProvider, TestProvider
from kunde.core.errors import ConfigurationError, NotFound

if TYPE_CHECKING:
    from kunde.kernel import Kernel


class PaymentGateway:
    def __init__(self, kernel: Kernel) -> None:
        secret = hashlib.sha256(b"kunde-test-psp\x00" + kernel.settings.secret_key.encode())
        self.test = TestProvider(secret.digest())
        self.providers: dict[str, PaymentProvider] = {"test": self.test}
        settings = kernel.settings
        if settings.stripe_api_key:
            from kunde.commerce.payments_stripe import StripeProvider

            self.providers["stripe"] = StripeProvider(
                settings.stripe_api_key, settings.stripe_webhook_secret)
        self.default = settings.payment_provider
        if self.default not in self.providers:
            raise ConfigurationError(f"payment provider {self.default!r} is not configured")
        if self.default == "test" and not kernel.settings.is_dev:
            raise ConfigurationError("the test payment provider is for dev and test only; set "
                                     "KUNDE_PAYMENT_PROVIDER and the provider's credentials")

    def get(self, name: str) -> PaymentProvider:
        provider = self.providers.get(name)
        if provider is None:
            raise NotFound(f"no payment provider {name!r}", code="commerce.unknown_provider")
        return provider
