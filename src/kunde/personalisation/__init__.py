"""Personalisation: recommenders, CLV and churn, next-best-offer, experiments and flags."""
