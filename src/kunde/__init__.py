"""Kunde: a connected-customer platform for retailers."""

__version__ = "0.1.0"
