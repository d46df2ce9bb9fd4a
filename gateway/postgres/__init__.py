"""Postgres as the durable store: one connection pool shared by the stores (`database`), and
the schema's versioned migrations (`schema`, `migrations/`)."""
