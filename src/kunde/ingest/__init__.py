"""Segment-Spec ingestion: the Tracking API, validation, de-duplication, e-commerce projection."""
