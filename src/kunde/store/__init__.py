"""Storage: engines, migrations, the unit of work, the event log and its consumers."""
