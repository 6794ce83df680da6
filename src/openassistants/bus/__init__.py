"""The event bus: each run's log of stream events and its fan-out to subscribers, and the
cross-process wake-ups (``notify``). ``base`` is what services see; ``memory`` serves one process
(SQLite), ``postgres`` every process sharing a PostgreSQL database."""
