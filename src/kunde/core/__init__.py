"""Shared kernel: ids, clock, errors, the event envelope, JSON helpers."""
