"""Notifications: signed webhooks, a live event stream and a catch-up feed for event subscribers."""
