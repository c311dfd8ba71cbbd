"""Customer service: cases, conversations, macros, feedback (CSAT/NPS), reporting."""
