"""Access control: API keys, source write keys, staff users and roles, customer tokens."""
