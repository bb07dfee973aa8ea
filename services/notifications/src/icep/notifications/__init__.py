"""Notifications: signed webhooks (and later the stream and feed) for event subscribers."""
