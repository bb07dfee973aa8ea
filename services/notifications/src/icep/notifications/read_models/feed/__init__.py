"""The event log: every consumed event in order, read back as the catch-up feed and the live stream."""
