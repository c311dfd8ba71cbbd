"""The Customer 360: identity graph, profiles and traits, timeline, consent, segments."""
