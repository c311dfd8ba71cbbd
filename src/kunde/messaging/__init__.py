"""Messaging: templates per locale, email over SMTP and signed webhooks, outbox, archive."""
