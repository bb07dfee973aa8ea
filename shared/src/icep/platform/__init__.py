"""ICEP platform library: what every service shares (settings, database, outbox, consumer, events,
telemetry, auth, HTTP helpers, CLI). It imports no service."""
