"""Fulfilment: shipments, carrier tracking, delivery promises, delay care, returns, refunds."""
