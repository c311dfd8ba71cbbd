"""Loyalty: points ledger, earn rules, tiers, welcome rewards, quests, seasons, teams, rewards."""
