"""SQLite: the ledger, the event history, the durable job queue and the daemon's own state."""
